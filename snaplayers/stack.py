"""A stack of layers for one DLE: set up bottom-up, torn down top-down, always from the journal.

DLEs that read through the same layers (two partitions of one VM disk: one snapshot; two
partitions of one md array: one assembled leg too) share them. A layer is a kernel object named
by the layers under it and its own token (Layer.key), not by the DLE; each DLE's journal records
the whole stack it reads, shared layers included, and a layer goes with the last journal that
holds it. Which DLE shares what, and which leftovers of a killed run are reaped, is decided under
one lock per origin LV.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time

from . import log as debug_log
from .device import DeviceSpec
from .errors import Busy, SnaplayersError, SnapshotInvalid
from .journal import VERSION, Journal, all_journals, dle_lock, origin_lock
from .layers import Context, Layer, node_id, registry

log = debug_log.get("snaplayers.stack")

HOLDING = ("creating", "up")        # a layer in these states may have made something
# a DLE shares another's layers only if they were made as it would make them
SHARED_SETTINGS = ("size", "recovery", "key_dir")


def dle_id(config: str, host: str, disk: str) -> str:
    """Names one DLE's journal and lock; stable across calls."""
    return hashlib.sha256(f"{config}\0{host}\0{disk}".encode()).hexdigest()[:12]


def required_tools(spec: DeviceSpec) -> list[str]:
    kinds = registry()
    needed = {t for layer in spec.layers for t in kinds[layer.kind].tools}
    return sorted(needed | set(kinds["mount"].tools))


def chain(ctx: Context, recs: list[dict]) -> list[Layer]:
    """The layers a journal records, bottom-up, each linked to its parent."""
    kinds, layers, parent = registry(), [], None
    for rec in recs:
        parent = kinds[rec["kind"]](ctx, rec, parent)
        layers.append(parent)
    return layers


def held(layers: list[Layer]) -> set[str]:
    return {layer.key() for layer in layers if layer.rec.get("state") in HOLDING}


def instant(data: dict):
    """When what the stack reads was taken: no later than its snapshot's lvcreate (that of
    the DLE that made it, for a shared one). Dates the dump's listed-incremental files."""
    first = (data.get("layers") or [{}])[0]
    return first.get("taken") or data.get("started")


def origin_of(recs: list[dict]) -> str | None:
    first = recs[0] if recs else {}
    return f"{first['vg']}/{first['origin']}" if first.get("kind") == "lvm" else None


class Other:
    """Another DLE's journal of the same origin: what it holds, and whether a set-up may share
    its layers (`why` says why not)."""

    def __init__(self, dle: str, data: dict, layers: list[Layer]):
        self.dle, self.data, self.layers = dle, data, layers
        self.held = held(layers)
        self.why: str | None = "not yet judged"

    def rec(self, key: str) -> dict:
        return next(layer.rec for layer in self.layers if layer.key() == key)

    def __str__(self):
        return f"DLE {self.data.get('disk')!r} (pid {self.data.get('pid')})"


class Stack:
    def __init__(self, ctx: Context, config: str = "", host: str = "", disk: str = ""):
        self.ctx = ctx
        self.ident = {"config": config, "host": host, "disk": disk}
        self.journal = Journal(ctx.settings.state_dir, ctx.dle_id)
        self.torn_down: dict | None = None     # the journal of the stack teardown() removed

    def lock(self):
        return dle_lock(self.ctx.settings.state_dir, self.ctx.dle_id, self.ident["disk"])

    def _origin_lock(self, origin: str):
        return origin_lock(self.ctx.settings.state_dir, node_id(origin), origin)

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, spec: DeviceSpec, mount: bool = True) -> str:
        """Returns the mount point (without `mount`, the top layer's device: what `discover`
        probes). On failure, whatever was built is torn down again."""
        kinds = registry()
        if mount:
            kinds["mount"].check_base(self.ctx.host, self.ctx.settings.mount_base)
        origin = f"{spec.source.vg}/{spec.source.lv}"
        with self._origin_lock(origin):
            own = self.journal.load()
            others = self._others(origin, reap=True,
                                  mine=held(self._layers_from(own)) if own else set())
            self.recover(set().union(*(o.held for o in others)))
            return self._setup(spec, others, mount)

    def _setup(self, spec: DeviceSpec, others: list[Other], mount: bool = True) -> str:
        kinds = registry()
        data = {"version": VERSION, **self.ident, "device": spec.format(),
                "dle_id": self.ctx.dle_id, "pid": os.getpid(), "owner": self.ctx.host.caller(),
                "started": time.time(),
                "state": "setting-up", "settings": self.ctx.settings.as_dict(), "layers": []}
        built: list[Layer] = []
        sharing = True
        try:
            parent: Layer | None = None
            for token in (*spec.layers, None) if mount else spec.layers:
                cls = kinds[token.kind if token is not None else "mount"]
                layer = cls.plan(self.ctx, token, parent, spec)
                holders = [o for o in others if layer.key() in o.held]
                share = next((o for o in holders if o.why is None), None) if sharing else None
                if share is not None:
                    # made by another DLE and up: read through it as it is, touch nothing
                    layer = cls(self.ctx, copy.deepcopy(share.rec(layer.key())), parent)
                    try:
                        layer.check_left()      # an overflowed snapshot is no point in time
                    except SnapshotInvalid as err:
                        raise SnaplayersError(f"{err}; {share} still reads it: set this DLE up "
                                              "again when that one is done") from None
                    log.info("share %s with %s", layer.rec["token"], share)
                    built.append(layer)
                    data["layers"].append(layer.rec)
                    self.journal.write(data)
                    parent = layer
                    continue
                sharing = False
                if holders:
                    raise Busy(f"{layer.rec['token']}: {holders[0]} holds it and it cannot be "
                               f"shared ({holders[0].why}); 'snaplayers status' shows it")
                if parent is None:
                    layer.rec["taken"] = data["started"]    # no later than the snapshot's instant
                built.append(layer)
                data["layers"].append(layer.rec)
                self.journal.write(data)            # names are on disk before anything exists
                log.info("set up %s", layer.rec["token"])
                layer.setup(checkpoint=lambda: self.journal.write(data))
                self.journal.write(data)
                parent = layer
        except BaseException as err:
            log.info("set-up failed (%s): unwinding %d layer(s)", err, len(built))
            try:
                self._teardown(data, built[::-1], set().union(*(o.held for o in others)),
                               read=False)
            except SnaplayersError as unwind:
                raise SnaplayersError(f"{err}; unwinding also failed: {unwind}; run "
                                      "'snaplayers cleanup'") from err
            raise
        data["state"] = "up"
        self.journal.write(data)
        return built[-1].device

    # -- the other DLEs of the same origin --------------------------------------------------
    def _others(self, origin: str, reap: bool, mine: set[str]) -> list[Other]:
        """Every other DLE's journal that reads this origin. With reap, each is judged: one a
        set-up may share (why None), one that holds its layers for a reason (why), or a
        leftover nobody will tear down (its Amanda process is gone, or its set-up or tear-down
        never finished), which is torn down now except for what the others and `mine` hold."""
        found = []
        for dle, data in all_journals(self.ctx.settings.state_dir):
            if dle == self.ctx.dle_id or data is None or data.get("dle_id") != dle:
                continue
            try:
                if origin_of(data["layers"]) != origin:
                    continue
                found.append(Other(dle, data, chain(self.ctx, data["layers"])))
            except (KeyError, TypeError, AttributeError) as err:
                log.info("journal %s is not one snaplayers wrote (%s): left alone", dle, err)
        if not reap:
            return found
        for other in found:
            other.why = self._judge(other)
            if other.why == "leftover":
                rest = set(mine).union(*(o.held for o in found if o is not other))
                other.why = self._reap(other, rest)
                if other.why == "reaped":
                    other.held = set()
        return [o for o in found if o.why != "reaped"]

    def _judge(self, other: Other) -> str | None:
        """Under the origin lock, so no other process is half-way through this journal: a
        stack is shared if it is complete, its Amanda process runs (or cannot be checked), its
        snapshot is younger than stale-seconds and it was made as this DLE would make it; kept
        (the reason) otherwise while its Amanda process runs; else it is a leftover."""
        data, settings = other.data, self.ctx.settings
        alive = self.ctx.host.alive(data.get("owner") or {})
        if data.get("state") != "up" or alive is False:
            return "leftover"
        age = time.time() - float(instant(data) or 0)
        if age >= settings.stale_seconds:
            if alive is None and time.time() - float(data.get("started") or 0) >= settings.stale_seconds:
                return "leftover"           # as its own DLE's recover() takes it
            # a live reader's: its own DLE's next set-up decides, not another's
            return (f"its snapshot was taken {age:.0f} s ago, longer than stale-seconds, and "
                    f"pid {(data.get('owner') or {}).get('pid', '?')} that reads it "
                    f"{'still runs' if alive else 'cannot be checked'}")
        theirs, mine = data.get("settings") or {}, settings.as_dict()
        differ = [k for k in SHARED_SETTINGS if theirs.get(k) != mine.get(k)]
        return f"set up with another {', '.join(differ)}" if differ else None

    def _reap(self, other: Other, rest: set[str]) -> str:
        """Tear down another DLE's leftover stack, as its own next set-up would."""
        from .props import Settings
        try:
            settings = Settings(**{**other.data["settings"], "sudo": self.ctx.settings.sudo,
                                   "state_dir": self.ctx.settings.state_dir})
        except (TypeError, KeyError, SnaplayersError) as err:
            return f"its journal's settings are not snaplayers' ({err})"
        ctx = Context(self.ctx.runner, self.ctx.host, settings, other.dle)
        stack = Stack(ctx, **{k: str(other.data.get(k) or "") for k in self.ident})
        log.info("reaping the leftover stack of %s", other)
        try:
            stack._teardown(other.data, chain(ctx, other.data["layers"])[::-1], rest, read=False)
        except SnapshotInvalid:
            pass    # that dump failed at its own tear-down, or will never be reported
        except SnaplayersError as err:
            log.info("could not tear down %s: %s", other, err)
            return f"its leftover stack could not be torn down: {err}"
        return "reaped"

    # -- tear-down -------------------------------------------------------------------------
    def teardown(self, force: bool = False) -> bool:
        """Tear down what the journal records. False if there was nothing of this caller's: a
        stack another Amanda process made and still runs (amdump's, when amcheck's PRE was
        refused as busy) is left to that process's own POST, which checks it (force: the
        operator's cleanup). What the journal said stays in self.torn_down (its `started` dates
        the dump's listed-incremental files)."""
        data = self.journal.load()
        if data is None:
            return False
        owner = data.get("owner") or {}
        if not force and owner != self.ctx.host.caller() and self.ctx.host.alive(owner):
            log.info("the stack belongs to pid %s, which still runs: left to its own POST",
                     owner.get("pid"))
            return False
        origin = origin_of(data["layers"])
        if origin is None:
            self._teardown(data, self._layers_from(data)[::-1], set())
        else:
            with self._origin_lock(origin):
                data = self.journal.load()      # as it is now that no one else acts on it
                if data is None:
                    return False
                layers = self._layers_from(data)
                others = self._others(origin, reap=True, mine=held(layers))
                self._teardown(data, layers[::-1], set().union(*(o.held for o in others)))
        self.torn_down = data
        return True

    def _layers_from(self, data: dict) -> list[Layer]:
        return chain(self.ctx, data["layers"])

    def _teardown(self, data: dict, top_down: list[Layer], shared: set[str],
                  read: bool = True) -> None:
        """Top-down; stops at the first layer that refuses (nothing under a busy mount is
        touched), but an overflowed snapshot is removed first and reported after. A layer in
        `shared` (and so everything under it) stays for the other DLEs that hold it; if this
        DLE read through it, it is checked all the same."""
        data["state"] = "tearing-down"
        invalid: SnapshotInvalid | None = None
        left = False
        for layer in top_down:
            if left or layer.key() in shared:
                if not left:
                    log.info("leave %s and what is under it to the other DLEs that read it",
                             layer.rec["token"])
                left = True
                try:
                    if read:
                        layer.check_left()
                except SnapshotInvalid as err:
                    invalid = invalid or err
                continue
            log.info("tear down %s", layer.rec["token"])
            try:
                layer.teardown()
            except SnapshotInvalid as err:
                invalid = err
            except SnaplayersError:
                data["state"] = "teardown-failed"
                self.journal.write(data)
                raise
            self.journal.write(data)
        self.journal.remove()
        if invalid is not None:
            raise invalid

    def recover(self, shared: set[str] = frozenset()) -> None:
        """Before a set-up: a leftover stack is torn down if its set-up never finished, if the
        Amanda process that made it (and would run its POST-DLE call) is gone, or if it is
        older than stale-seconds; a recent complete one whose Amanda process still runs may
        still be read, so it is refused. What other DLEs hold (`shared`) stays."""
        data = self.journal.load()
        if data is None:
            return
        age = time.time() - data.get("started", 0)
        stale = self.ctx.settings.stale_seconds
        owner = data.get("owner") or {}
        alive = self.ctx.host.alive(owner)
        if data.get("state") == "up" and age < stale and alive is not False:
            raise Busy(f"DLE {self.ident['disk']} was set up {age:.0f} s ago (stale-seconds "
                       f"{stale}) by pid {owner.get('pid', '?')}, which "
                       f"{'still runs' if alive else 'cannot be checked'}, and is still mounted at "
                       f"{self._mountpoint(data)}; if no Amanda run uses it, run 'snaplayers "
                       "cleanup --disk ...' (with --force while that process runs)")
        why = "its Amanda process is gone" if alive is False else f"state {data.get('state')}"
        log.info("recovering leftover stack (%s, %.0f s old)", why, age)
        try:
            self._teardown(data, self._layers_from(data)[::-1], set(shared), read=False)
        except SnapshotInvalid:
            pass    # that dump already failed at its own tear-down; nothing is read from it now

    @staticmethod
    def _mountpoint(data: dict) -> str:
        return next((r["mountpoint"] for r in data["layers"] if r["kind"] == "mount"), "?")

    def status(self) -> dict | None:
        data = self.journal.load()
        if data is None:
            return None
        layers = self._layers_from(data)
        origin = origin_of(data["layers"])
        others = self._others(origin, reap=False, mine=set()) if origin else []
        data["live"] = [{"token": layer.rec["token"], "describe": layer.describe(),
                         "present": layer.exists(), "names": layer.kernel_names(),
                         "shared_with": sorted(str(o.data.get("disk")) for o in others
                                               if layer.key() in o.held)}
                        for layer in layers]
        data["owner_alive"] = self.ctx.host.alive(data.get("owner") or {})
        return data
