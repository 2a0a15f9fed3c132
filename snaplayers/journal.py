"""The per-DLE journal (fixed keys, written atomically) and the locks beside it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time

from .errors import Busy, SnaplayersError

KEYS = ("version", "config", "host", "disk", "device", "dle_id", "pid", "owner", "started", "updated",
        "state", "settings", "layers")
VERSION = 1


def ensure_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)


def replace_whole(path: str, data: bytes, mode: int = 0o600, gid: int = -1,
                  unchanged=None) -> None:
    """All or nothing: a temp file in the same directory (mode, and gid if the caller may),
    fsynced, renamed over path, the directory fsynced. `unchanged`, if given, is called just
    before the rename and raises OSError if path is no longer the file the data came from."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            if gid != -1:
                with contextlib.suppress(PermissionError):      # a group the caller is not in
                    os.fchown(fd, -1, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if unchanged is not None:
            unchanged()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Journal:
    def __init__(self, state_dir: str, dle_id: str):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, f"{dle_id}.json")

    def load(self) -> dict | None:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise SnaplayersError(f"journal {self.path} is unreadable ({err}); check the stack "
                                  "with 'snaplayers status' and remove the file") from None
        if not isinstance(data, dict) or data.get("version") != VERSION or set(data) - set(KEYS):
            raise SnaplayersError(f"journal {self.path} is not a snaplayers v{VERSION} journal")
        return data

    def write(self, data: dict) -> None:
        unknown = set(data) - set(KEYS)
        if unknown:
            raise ValueError(f"journal keys {sorted(unknown)} not in {KEYS}")
        data["updated"] = time.time()
        ensure_dir(self.state_dir)
        replace_whole(self.path, json.dumps(data, indent=1, sort_keys=True).encode())

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def not_roots_alone(state_dir: str) -> str | None:
    """Why root must not write journals and locks in state_dir, or None: in a directory another
    user can write (or replace: an ancestor of theirs) root would follow that user's symlinks.
    One not made yet is judged by where it would be made: that user could make it first."""
    from .helper import unsafe_dir
    path = os.path.abspath(state_dir)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return unsafe_dir(path)


def all_journals(state_dir: str):
    """(path, data) for every journal in state_dir; unreadable ones as (path, None)."""
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(".json"):
            try:
                out.append((name[:-5], Journal(state_dir, name[:-5]).load()))
            except SnaplayersError:
                out.append((name[:-5], None))
    return out


@contextlib.contextmanager
def _flock(path: str, blocking: bool, timeout: float, busy_message: str):
    ensure_dir(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if not blocking or time.monotonic() > deadline:
                    raise Busy(busy_message) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)   # closing drops the lock; a killed process drops it too


def dle_lock(state_dir: str, dle_id: str, disk: str):
    """Held for a whole PRE or POST call: a second call for the same DLE fails at once."""
    return _flock(os.path.join(state_dir, f"{dle_id}.lock"), False, 0,
                  f"DLE {disk} is being set up or torn down by another running snaplayers")


def origin_lock(state_dir: str, node: str, origin: str):
    """Held for a whole set-up or tear-down of any DLE that reads this origin LV: which of its
    layers another DLE shares is decided, and acted on, by one process at a time. A set-up
    under emulation takes tens of seconds, and several DLEs of one disk may queue."""
    return _flock(os.path.join(state_dir, f"origin-{node}.lock"), True, 900,
                  f"timed out after 900 s waiting for the other DLEs of {origin} to be set up "
                  "or torn down")


def discover_lock(state_dir: str):
    """Held for a whole `snaplayers discover`: a second one would share and rename its probes'
    snapshots under it."""
    return _flock(os.path.join(state_dir, "discover.lock"), False, 0,
                  "another snaplayers discover is running")


def allocation_lock(state_dir: str):
    """Held briefly around kernel-wide allocations (md minors)."""
    return _flock(os.path.join(state_dir, "allocation.lock"), True, 120,
                  "timed out after 120 s waiting for the allocation lock")
