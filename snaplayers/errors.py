"""One error tree; only the entry points (amanda.py, cli.py) turn these into exit codes."""

from __future__ import annotations


class SnaplayersError(Exception):
    """Anything snaplayers reports as one line."""

    exit_status = 1


class BadInput(SnaplayersError):
    """Rejected before any command runs: a malformed device, option or property."""

    exit_status = 2


class MissingTools(SnaplayersError):
    exit_status = 3


class CommandFailed(SnaplayersError):
    def __init__(self, argv, returncode, stderr):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        last = [ln for ln in (stderr or "").splitlines() if ln.strip()]
        detail = last[-1].strip() if last else "no message"
        super().__init__(f"{' '.join(self.argv)} exited {returncode}: {detail}")


class LayerError(SnaplayersError):
    """A layer refused or failed: wrong kind of device, identity mismatch, bad bounds."""


class Busy(SnaplayersError):
    """Another run holds this DLE, or a mount point is in use."""


class SnapshotInvalid(SnaplayersError):
    """The snapshot overflowed or was invalidated: the dump taken from it must fail."""

    exit_status = 4


class MountVanished(SnapshotInvalid):
    """The snapshot's mount was gone by tear-down: Amanda read the bare mount point."""


def show(token: str, limit: int = 64) -> str:
    """A token as it can be printed in one line: quoted, escaped, shortened."""
    text = token if len(token) <= limit else token[:limit] + "..."
    return ascii(text) if not text.isprintable() or not text.isascii() else repr(text)
