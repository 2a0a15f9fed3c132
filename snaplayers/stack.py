"""A stack of layers for one DLE: set up bottom-up, torn down top-down, always from the journal."""

from __future__ import annotations

import hashlib
import os
import time

from . import log as debug_log
from .device import DeviceSpec
from .errors import Busy, SnaplayersError, SnapshotInvalid
from .journal import VERSION, Journal, dle_lock
from .layers import Context, Layer, registry

log = debug_log.get("snaplayers.stack")


def dle_id(config: str, host: str, disk: str) -> str:
    """Names every kernel object and file of one DLE; stable across calls, short for dm names."""
    return hashlib.sha256(f"{config}\0{host}\0{disk}".encode()).hexdigest()[:12]


def required_tools(spec: DeviceSpec) -> list[str]:
    kinds = registry()
    needed = {t for layer in spec.layers for t in kinds[layer.kind].tools}
    return sorted(needed | set(kinds["mount"].tools))


class Stack:
    def __init__(self, ctx: Context, config: str = "", host: str = "", disk: str = ""):
        self.ctx = ctx
        self.ident = {"config": config, "host": host, "disk": disk}
        self.journal = Journal(ctx.settings.state_dir, ctx.dle_id)
        self.torn_down: dict | None = None     # the journal of the stack teardown() removed

    def lock(self):
        return dle_lock(self.ctx.settings.state_dir, self.ctx.dle_id, self.ident["disk"])

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, spec: DeviceSpec) -> str:
        """Returns the mount point. On failure, whatever was built is torn down again."""
        kinds = registry()
        kinds["mount"].check_base(self.ctx.host, self.ctx.settings.mount_base)
        self.recover()
        data = {"version": VERSION, **self.ident, "device": spec.format(),
                "dle_id": self.ctx.dle_id, "pid": os.getpid(), "owner": self.ctx.host.caller(),
                "started": time.time(),
                "state": "setting-up", "settings": self.ctx.settings.as_dict(), "layers": []}
        built: list[Layer] = []
        try:
            parent: Layer | None = None
            for token in (*spec.layers, None):
                cls = kinds[token.kind if token is not None else "mount"]
                layer = cls.plan(self.ctx, token, parent, spec)
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
                self._teardown(data, built[::-1])
            except SnaplayersError as unwind:
                raise SnaplayersError(f"{err}; unwinding also failed: {unwind}; run "
                                      "'snaplayers cleanup'") from err
            raise
        data["state"] = "up"
        self.journal.write(data)
        return built[-1].device

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
        self._teardown(data, self._layers_from(data)[::-1])
        self.torn_down = data
        return True

    def _layers_from(self, data: dict) -> list[Layer]:
        kinds = registry()
        return [kinds[rec["kind"]](self.ctx, rec) for rec in data["layers"]]

    def _teardown(self, data: dict, top_down: list[Layer]) -> None:
        """Top-down; stops at the first layer that refuses (nothing under a busy mount is
        touched), but an overflowed snapshot is removed first and reported after."""
        data["state"] = "tearing-down"
        invalid: SnapshotInvalid | None = None
        for layer in top_down:
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

    def recover(self) -> None:
        """Before a set-up: a leftover stack is torn down if its set-up never finished, if the
        Amanda process that made it (and would run its POST-DLE call) is gone, or if it is
        older than stale-seconds; a recent complete one whose Amanda process still runs may
        still be read, so it is refused."""
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
            self._teardown(data, self._layers_from(data)[::-1])
        except SnapshotInvalid:
            pass    # that dump already failed at its own tear-down; nothing is read from it now

    @staticmethod
    def _mountpoint(data: dict) -> str:
        return next((r["mountpoint"] for r in data["layers"] if r["kind"] == "mount"), "?")

    def status(self) -> dict | None:
        data = self.journal.load()
        if data is None:
            return None
        data["live"] = [{"token": layer.rec["token"], "describe": layer.describe(),
                         "present": layer.exists(), "names": layer.kernel_names()}
                        for layer in self._layers_from(data)]
        data["owner_alive"] = self.ctx.host.alive(data.get("owner") or {})
        return data
