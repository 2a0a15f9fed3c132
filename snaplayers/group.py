"""Groups: DLEs whose origin LVs must hold one instant (a VM's disks: its data on one, its
database log on another). The admin lists them in a root-owned file, one group per line:

    <name> <device field> <device field> ...

At the first set-up of any of its DLEs in a phase (amcheck, estimate, backup) the group's set
is made: a snapshot of every origin its devices name, all at one instant (the helper's
`snapshot-set`: every origin suspended, each snapshot made, all resumed, bounded in time). Each
snapshot is then held by a journal of the group's own (no Amanda process: `status` shows it as
`group <name> <vg>/<lv>`), so the group's DLEs share it as they share any snapshot, and what a
DLE reads is checked at its own tear-down as before. The set goes when every listed device has
been torn down in that phase, when a call of another phase or Amanda run (--timestamp) comes,
or after stale-seconds (as any leftover stack).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time

from . import log as debug_log
from .device import parse
from .errors import BadInput, Busy, SnaplayersError, SnapshotInvalid, show
from .journal import VERSION, Journal, _flock, origin_lock, replace_whole
from .layers import Context, node_id

log = debug_log.get("snaplayers.group")

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
MAX_ORIGINS = 8         # the helper's snapshot-set takes at most this many (lvm.MAX_SET)


class Group:
    def __init__(self, name: str, devices: list[str], origins: list[str]):
        self.name, self.devices, self.origins = name, devices, origins
        self.id = node_id(f"group {name}")

    def __repr__(self):
        return f"group {self.name}"


def read(path: str, mount_base: str) -> dict[str, Group]:
    """device field -> its Group, from the groups file (none there: no groups). The file says
    which LVs are suspended together, so it must be root's alone, like the helper."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    from .helper import unsafe_dir
    problem = unsafe_dir(os.path.dirname(path)) or (
        f"{path} is owned by uid {st.st_uid}, not root" if st.st_uid != 0 else
        f"{path} is writable by group or others" if st.st_mode & 0o022 else
        f"{path} is not a file" if not stat.S_ISREG(st.st_mode) else None)
    if problem:
        raise BadInput(f"groups file: {problem}")
    with open(path) as f:
        lines = f.read().splitlines()
    by_device: dict[str, Group] = {}
    by_origin: dict[str, str] = {}
    names = set()
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"groups file {path} line {number}"
        name, devices = words[0], words[1:]
        if not _NAME.match(name) or name in names:
            raise BadInput(f"{where}: group name {show(name)} must be new and 1-64 characters of "
                           "[A-Za-z0-9_.-]")
        names.add(name)
        origins = []
        for device in devices:
            try:
                spec = parse(device, mount_base)
            except BadInput as err:
                raise BadInput(f"{where}: {err}") from None
            origin = f"{spec.source.vg}/{spec.source.lv}"
            device = spec.format()
            if device in by_device:
                raise BadInput(f"{where}: device {show(device)} is in {by_device[device]} too")
            if by_origin.get(origin, name) != name:
                raise BadInput(f"{where}: {show(origin)} is in group {by_origin[origin]} too: "
                               "one LV, one instant")
            by_origin[origin] = name
            if origin not in origins:
                origins.append(origin)
        if not 2 <= len(origins) <= MAX_ORIGINS:
            raise BadInput(f"{where}: group {show(name)} names {len(origins)} LV(s); a group is "
                           f"2 to {MAX_ORIGINS} LVs (the DLEs of one LV share its snapshot anyway)")
        group = Group(name, [parse(d, mount_base).format() for d in devices], sorted(origins))
        for device in group.devices:
            by_device[device] = group
    return by_device


def phase(command: str) -> str:
    """PRE-DLE-BACKUP -> BACKUP: a set serves the calls of one phase."""
    return command.rsplit("-", 1)[-1]


class GroupSet:
    """A group's set of snapshots on this host: its state file (which devices were torn down)
    and one journal per origin holding that origin's snapshot."""

    def __init__(self, ctx: Context, group: Group, config: str, host: str):
        self.ctx, self.group, self.config, self.host = ctx, group, config, host
        self.path = os.path.join(ctx.settings.state_dir, f"group-{group.id}.set")

    def lock(self):
        """Held for a whole PRE or POST call of any of the group's DLEs."""
        return _flock(os.path.join(self.ctx.settings.state_dir, f"group-{self.group.id}.lock"),
                      True, 900, f"timed out after 900 s waiting for the other DLEs of "
                                 f"{self.group} to be set up or torn down")

    def member_ctx(self, origin: str) -> Context:
        return Context(self.ctx.runner, self.ctx.host, self.ctx.settings,
                       node_id(f"group {self.group.name} {origin}"))

    def load(self) -> dict | None:
        try:
            with open(self.path) as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}           # not ours to read: the set is made anew
        fields = {"phase": str, "made": (int, float), "done": list, "devices": list}
        if not isinstance(state, dict) or any(not isinstance(state.get(k), t) for k, t in fields.items()):
            return {}
        return state

    def save(self, state: dict) -> None:
        replace_whole(self.path, json.dumps(state, indent=1, sort_keys=True).encode())

    # -- set-up ------------------------------------------------------------------------------
    def ensure(self, command: str, timestamp: str | None, device: str) -> None:
        """Before a group DLE's own set-up: the set of this phase and run is there, or is made."""
        state = self.load()
        why = self._not_current(state, command, timestamp, device)
        if why is None:
            log.info("%s: its set of %s is up", self.group, state.get("made_for"))
            return
        if phase(command) == "AMCHECK" and state and self._held(state):
            # an amcheck during a run reads that run's set, and never ends it for the run
            log.info("%s: amcheck reads the set of %s", self.group, state.get("made_for"))
            return
        log.info("%s: a new set (%s)", self.group, why)
        self.release()      # whatever is left of an older set (its state file or not)
        self._make(command, timestamp)

    def _held(self, state) -> bool:
        """Is every snapshot of the set there, younger than stale-seconds?"""
        if time.time() - float(state.get("made", 0)) >= self.ctx.settings.stale_seconds:
            return False
        return all((Journal(self.ctx.settings.state_dir, self.member_ctx(o).dle_id).load() or {})
                   .get("state") == "up" for o in self.group.origins)

    def _not_current(self, state, command, timestamp, device) -> str | None:
        if not state:
            return "none yet"
        if state.get("phase") != phase(command):
            return f"the set is of phase {state.get('phase')}"
        if timestamp and state.get("timestamp") and timestamp != state["timestamp"]:
            return f"the set is of Amanda run {state['timestamp']}"
        if device in state.get("done", []):
            return f"{device} was torn down already in this set: another run"
        if not self._held(state):
            return "a snapshot of the set is gone, or the set is older than stale-seconds"
        return None

    def _make(self, command: str, timestamp: str | None) -> None:
        from .layers.lvm import LvSnapshot, take_set
        from .stack import Stack
        with contextlib.ExitStack() as locks:
            for origin in self.group.origins:       # sorted: every set takes them in one order
                locks.enter_context(origin_lock(self.ctx.settings.state_dir, node_id(origin), origin))
            now = time.time()
            members = []
            for origin in self.group.origins:
                ctx = self.member_ctx(origin)
                stack = Stack(ctx, self.config, self.host, f"group {self.group.name} {origin}")
                others = stack._others(origin, reap=True, mine=set())
                vg, lv = origin.split("/", 1)
                token = parse(f"{self.ctx.settings.mount_base}/lvm={vg}+{lv}").source
                layer = LvSnapshot.plan(ctx, token, None, None)
                holder = next((o for o in others if layer.key() in o.held), None)
                if holder is not None:
                    raise Busy(f"{self.group}: {origin}'s snapshot is held by {holder}; the set "
                               "is made when it is torn down")
                layer.rec["taken"] = now
                data = {"version": VERSION, "config": self.config, "host": self.host,
                        "disk": f"group {self.group.name} {origin}", "device": "",
                        "dle_id": ctx.dle_id, "pid": os.getpid(), "owner": {}, "started": now,
                        "state": "setting-up", "settings": self.ctx.settings.as_dict(),
                        "layers": [layer.rec]}
                members.append((stack, layer, data))

            def checkpoint():
                for stack, _, data in members:
                    stack.journal.write(data)
            checkpoint()                            # names on disk before anything exists
            try:
                take_set([layer for _, layer, _ in members], checkpoint)
            except BaseException as err:
                log.info("%s: the set failed (%s): unwinding", self.group, err)
                for stack, layer, data in members:
                    with contextlib.suppress(SnapshotInvalid):
                        stack._teardown(data, [layer], set(), read=False)
                raise
            for stack, _, data in members:
                data["state"] = "up"
                stack.journal.write(data)
            self.save({"group": self.group.name, "phase": phase(command), "timestamp": timestamp,
                       "made": now, "made_for": command, "devices": self.group.devices,
                       "done": []})
            log.info("%s: set of %d snapshots made at one instant", self.group, len(members))

    # -- tear-down ---------------------------------------------------------------------------
    def done(self, command: str, device: str, quiet: bool = False) -> None:
        """After a group DLE's tear-down (or failed set-up): the set goes with its last device.
        quiet: a failure to remove it is logged, not raised (the set is then a leftover that
        the next set, stale-seconds or `cleanup` removes; what the DLE read was judged)."""
        try:
            self._done(command, device)
        except SnaplayersError as err:
            if not quiet:
                raise
            log.error("%s: its set could not be released: %s", self.group, err)

    def _done(self, command: str, device: str) -> None:
        state = self.load()
        if not state or state.get("phase") != phase(command):
            return          # an amcheck that read another phase's set: that set goes on
        done = sorted(set(state.get("done", [])) | {device})
        if set(done) >= set(state.get("devices", [])):
            log.info("%s: every device of its set is torn down", self.group)
            self.release()
            return
        state["done"] = done
        self.save(state)

    def release(self) -> None:
        """Each origin's snapshot goes, unless a DLE still reads it (that DLE's tear-down takes
        it then); what a reader read is checked at its own tear-down."""
        from .stack import Stack
        for origin in self.group.origins:
            ctx = self.member_ctx(origin)
            stack = Stack(ctx, self.config, self.host, f"group {self.group.name} {origin}")
            try:
                stack.teardown(force=True)
            except SnapshotInvalid as err:
                log.info("%s: %s (its readers were told at their tear-down)", self.group, err)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def find(settings, device: str) -> Group | None:
    return read(settings.groups, settings.mount_base).get(device)


def state_files(state_dir: str) -> list[str]:
    """Every group's state file: `cleanup` removes them with the journals they name."""
    try:
        names = os.listdir(state_dir)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(state_dir, n) for n in names
                  if n.startswith("group-") and n.endswith(".set"))
