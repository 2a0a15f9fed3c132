"""Layers: one class per layer, a template lifecycle, a parent link (as blivet's StorageDevice).

Each layer keeps everything it creates in `rec`, a plain dict the stack writes to the journal
*before* creating anything (names are chosen up front), so tear-down never re-derives a name.
Subclasses write `_pre_setup`/`_setup`/`_post_setup`, `_live` and `_teardown` only.
"""

from __future__ import annotations

import hashlib
import os
import time

from ..errors import LayerError
from ..helper import unescape, unsafe_dir
from ..props import Settings
from ..record import Record
from ..run import Runner


class Host:
    """Live, unprivileged reads of this machine: never cached, read each time."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def read(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def rdev(self, path: str) -> str:
        st = os.stat(path)
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    def holders(self, path: str) -> list[str]:
        """Kernel names of the devices stacked on this one (an md array on its leg)."""
        return os.listdir(f"/sys/dev/block/{self.rdev(path)}/holders")

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path) and not os.path.islink(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def unsafe_dir(self, path: str) -> str | None:
        return unsafe_dir(path)

    def mounts(self) -> list[dict[str, str]]:
        """/proc/self/mountinfo as dicts: majmin, mountpoint, options, fstype, source."""
        rows = []
        for line in self.read("/proc/self/mountinfo").splitlines():
            left, _, right = line.partition(" - ")
            f, r = left.split(), right.split()
            rows.append({"majmin": f[2], "mountpoint": unescape(f[4]), "options": f[5],
                         "fstype": r[0] if r else "", "source": r[1] if len(r) > 1 else ""})
        return rows

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def caller(self) -> dict[str, object]:
        """The process that ran us (Amanda's sendbackup, sendsize or amandad): it is the one
        that will run the matching POST-DLE call, so while it lives a stack is in use."""
        pid = os.getppid()
        return {"pid": pid, "start": self._start_time(pid)}

    def alive(self, caller: dict[str, object]) -> bool | None:
        """Is that process still running? None when it cannot be told (no pid, or pid 1)."""
        pid = caller.get("pid") if isinstance(caller, dict) else None
        if not isinstance(pid, int) or pid <= 1 or caller.get("start") is None:
            return None
        return self._start_time(pid) == caller["start"]     # a reused pid has another start

    def _start_time(self, pid: int) -> str | None:
        try:
            stat = self.read(f"/proc/{pid}/stat")
        except OSError:
            return None
        fields = stat.rpartition(")")[2].split()
        if fields[0] in ("Z", "X"):                          # killed, not yet reaped: gone
            return None
        return fields[19]                                    # field 22: starttime

    def wait_for(self, path: str, seconds: float = 10.0) -> bool:
        """Device nodes appear shortly after the kernel creates them (devtmpfs or udev)."""
        deadline = time.monotonic() + seconds
        while not self.exists(path):
            if time.monotonic() > deadline:
                return False
            self.sleep(0.05)
        return True


class Context(Record):
    runner: Runner
    host: Host
    settings: Settings
    dle_id: str                     # short hash of config/host/disk: names its journal and lock

    def alloc_lock(self):
        from ..journal import allocation_lock
        return allocation_lock(self.settings.state_dir)


PREFIX = "snaplayers"        # every kernel object a stack makes is named with it
DM_PREFIX = PREFIX + "-"     # the device-mapper names of partitions and opened LUKS containers


def node_id(key: str) -> str:
    """Names the kernel objects of one layer node (privilege.COMMON's ID): every DLE that reads
    through the same layers computes the same name, so they find and share it."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Layer:
    kind = ""
    tools: tuple[str, ...] = ()
    # argv templates the helper admits: a tool, then one pattern per argument, matched whole;
    # {NAME}s are the common names (privilege.COMMON) and those the layers declare in `names`
    privileged: tuple[tuple[str, ...], ...] = ()
    names: dict[str, str] = {}      # the format of every name this layer makes
    offers = ""                     # the devices it offers to the layer above, as a pattern

    def __init__(self, ctx: Context, rec: dict, parent: "Layer" | None = None):
        self.ctx = ctx
        self.rec = rec
        self.parent = parent

    # -- names, chosen before anything exists ---------------------------------------------
    @classmethod
    def plan(cls, ctx: Context, token, parent: "Layer" | None, spec) -> "Layer":
        raise NotImplementedError

    @property
    def device(self) -> str:
        """The block device this layer offers to the layer above it."""
        return self.rec["device"]

    def key(self) -> str:
        """Which kernel object this is, the same for every DLE that reads through it: the
        layers under it and its own token."""
        below = self.parent.key() if self.parent is not None else ""
        return f"{below},{self.rec['token']}"

    @staticmethod
    def id_for(parent: "Layer", token) -> str:
        """node_id of the layer `token` will plan on `parent`, before that layer exists."""
        return node_id(f"{parent.key()},{token.token()}")

    def run(self, *argv: str, accept=(0,)):
        return self.ctx.runner.run(list(argv), accept=accept)

    # -- lifecycle ------------------------------------------------------------------------
    def setup(self, checkpoint=lambda: None) -> None:
        """checkpoint() journals what _pre_setup learnt before anything is created."""
        self._pre_setup()
        self.rec["state"] = "creating"      # from here on, something of ours may exist
        checkpoint()
        self._setup()
        self._post_setup()
        self.rec["state"] = "up"

    def teardown(self) -> None:
        """Remove what this layer created, if it still exists; checks identity first. A layer
        that never got past its checks created nothing: what is there belongs to someone else."""
        live = self._live() if self.rec.get("state") != "planned" else None
        if live is not None:
            self._teardown(live)
        self.rec["state"] = "gone"

    def exists(self) -> bool:
        return self._live() is not None

    def check_left(self) -> None:
        """This layer stays up for another DLE that reads through it: raise if what this DLE
        read through it cannot be trusted (an overflowed snapshot, a vanished mount)."""

    def _pre_setup(self) -> None:
        pass

    def _setup(self) -> None:
        raise NotImplementedError

    def _post_setup(self) -> None:
        pass

    def _live(self):
        """What is there now under this layer's names (read each time, never cached), or None:
        tear-down checks its identity against `rec` before removing it."""
        raise NotImplementedError

    def _teardown(self, live) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.rec.get("device", self.kind)

    def kernel_names(self) -> dict[str, str]:
        """The names of what this layer makes (and the device it offers), as recorded."""
        return {"device": self.rec["device"]}

    def fail(self, message: str) -> LayerError:
        return LayerError(f"{self.rec.get('token', self.kind)}: {message}")


def registry():
    """kind -> Layer class; a new layer is one new module plus one line here."""
    from .luks import LuksOpen
    from .lvm import LvSnapshot
    from .mount import ReadOnlyMount
    from .part import Partition
    from .raid1 import DegradedRaid1
    from .vg import GuestVg
    return {cls.kind: cls for cls in (LvSnapshot, DegradedRaid1, Partition, GuestVg, LuksOpen,
                                      ReadOnlyMount)}


def parse_export(text: str) -> dict[str, str]:
    """KEY=value lines, as `blkid -o export` and `mdadm --export` print them."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if eq:
            out[key] = value
    return out


def parse_nameprefixes(text: str) -> list[dict[str, str]]:
    """Rows of LVM's `--noheadings --nameprefixes` report: LVM2_LV_NAME='x' -> {"lv_name": "x"}."""
    import shlex
    rows = []
    for line in text.splitlines():
        fields = {}
        for pair in shlex.split(line):
            key, _, value = pair.partition("=")
            fields[key.replace("LVM2_", "").lower()] = value
        if fields:
            rows.append(fields)
    return rows
