"""`snaplayers discover`: every filesystem inside a storage host's LVs, as disklist lines.

Each origin is probed read-only through the plugin's own layers (blivet's way: a layer is set up
through its parents, looked into, and torn down), so what discover finds is what a dump will
read, and every command of a probe stack is one the installed helper would admit, its guards
included (a LUKS2 header with tokens is never opened). Every probe is a stack of its own journal
and its own snapshot suffix: a killed discover is recovered like a killed dump, and it never
meets a backup's snapshot or arrays. A guest's disk is hostile: its walk is bounded in probes,
partitions, guest LVs and time, and one that fails is a skipped line, not a failed run.
"""

from __future__ import annotations

import os
import time

from .device import _KEY as KEY_NAME
from .device import Luks, Lvm, Part, Raid1, Vg, dm_name, parse
from .errors import BadInput, SnaplayersError, SnapshotInvalid
from .helper import Refused, _guard_luks, lvm_config
from .layers import Context, Host, parse_export, parse_nameprefixes
from .layers.lvm import _NOT_AN_ORIGIN, mib
from .layers.mount import OPTIONS
from .layers.vg import CLONE_PREFIX
from .record import Record
from .run import Runner
from .stack import Stack, dle_id

SUFFIX = ".amdisc"                          # not .amsnap: a probe never meets a backup's snapshot
# root's own, and kept across a reboot like the snapshots it records
STATE_DIR = "/var/lib/snaplayers/discover"
LV_FIELDS = "vg_name,lv_name,lv_attr,origin,pool_lv,devices,vg_free"
GUEST_LV_FIELDS = "lv_name,lv_attr,origin,segtype"
CONFIG = "discover"                         # the journals' config: `status` tells them apart
# what one LV's walk may take: a guest's tables can nest and fan out without end
MAX_PROBES = 64             # stacks set up
MAX_PARTITIONS = 32         # per partition table
MAX_GUEST_LVS = 32          # per guest VG
MAX_SECONDS = 300           # the walk's own time; a layer already started finishes
GUEST_SEGTYPES = ("linear", "striped")  # no guest thin, raid or cache metadata parsed as root


class ProbeLeft(SnaplayersError):
    """A probe could not be torn down: the run stops there, and says what to clean up."""


class Interrupt:
    """SIGINT, SIGTERM or SIGHUP: the command running finishes (an LVM command killed half-way
    can leave an origin suspended), and the next one raises KeyboardInterrupt, once, so that
    the probes are torn down; later signals are ignored until they are."""

    def __init__(self):
        self.pending = self.raised = False

    def signal(self, signum=None, frame=None):
        if not self.raised:
            self.pending = True

    def check(self):
        if self.pending:
            self.pending, self.raised = False, True
            raise KeyboardInterrupt


class ProbeRunner(Runner):
    """Runs as root, each command in a session of its own (a Ctrl-C at the terminal reaches
    discover only), after the pending signal check."""

    new_session = True

    def __init__(self, stop: Interrupt, policy: dict | None = None):
        super().__init__("no", policy=policy)
        self.stop = stop

    def run(self, argv, accept=(0,)):
        self.stop.check()
        return super().run(argv, accept=accept)


class Found(Record, frozen=True):
    device: str             # the disklist's device field
    disk: str               # its disk name
    fstype: str
    origin: str             # vg/lv


class Skipped(Record, frozen=True):
    where: str              # vg/lv, and the layers above it
    why: str


def disk_name(tokens) -> str:
    """Stable across runs: the LV's vg/lv, then where the filesystem sits in it."""
    first, rest = tokens[0], tokens[1:]
    return "/".join([first.vg, first.lv, *(t.token() for t in rest)])


def hidden(name: str) -> bool:
    return name.startswith("[")


def origin_problem(row: dict[str, str]) -> str | None:
    """Why an LV is no origin discover probes (as the lvm layer would refuse it), or None."""
    attr = row.get("lv_attr", "")
    if row.get("origin"):
        return f"a snapshot of {row['origin']}"
    if attr[:1] in _NOT_AN_ORIGIN:
        return f"not an origin volume (lv_attr {attr})"
    if attr[4:5] != "a":
        return "not active: there is no device to read"
    return None


def physical_volumes(rows: list[dict[str, str]], vg: str, lv: str, seen=None) -> set[str]:
    """The PVs an LV's data lies on, through its sub-LVs and a thin LV's pool."""
    seen = set() if seen is None else seen
    if (vg, lv) in seen:
        return set()
    seen.add((vg, lv))
    row = next((r for r in rows if r["vg_name"] == vg and r["lv_name"].strip("[]") == lv), None)
    if row is None:
        return set()
    out: set[str] = set()
    for part in filter(None, (p.strip() for p in row.get("devices", "").split(","))):
        name = part.rsplit("(", 1)[0]
        if name.startswith("/"):
            out.add(name)
        else:
            out |= physical_volumes(rows, vg, name.strip("[]"), seen)
    if row.get("pool_lv"):
        out |= physical_volumes(rows, vg, row["pool_lv"].strip("[]"), seen)
    return out


def spindles(disks_of_lv: dict[str, set[str]]) -> dict[str, int]:
    """Amanda's spindle for each LV: LVs that share a physical disk share one, so Amanda never
    dumps two of them at once. Numbered in the order of each group's first disk: stable."""
    groups: list[tuple[set[str], set[str]]] = []        # (disks, lvs)
    for lv, disks in sorted(disks_of_lv.items()):
        joined = [g for g in groups if g[0] & disks] if disks else []
        merged = (set(disks), {lv})
        for g in joined:
            merged[0].update(g[0])
            merged[1].update(g[1])
            groups.remove(g)
        groups.append(merged)
    out = {}
    for n, (_, lvs) in enumerate(sorted(groups, key=lambda g: min(g[0] or g[1])), start=1):
        out.update({lv: n for lv in lvs})
    return out


class ProbeHost(Host):
    """A probe's stacks are this process's own: no Amanda process will run their POST."""

    def caller(self):
        return {"pid": os.getpid(), "start": self._start_time(os.getpid())}

    def disks(self, path: str) -> set[str]:
        """The whole disks a block device lies on (sysfs: a partition's disk, a dm or md
        device's legs, down to the bottom)."""
        name = os.path.basename(self.realpath(path))
        node = f"/sys/class/block/{name}"
        slaves = self.listdir(f"{node}/slaves") if self.exists(f"{node}/slaves") else []
        if slaves:
            return set().union(*(self.disks(f"/dev/{s}") for s in slaves))
        if self.exists(f"{node}/partition"):
            return {os.path.basename(os.path.dirname(self.realpath(node)))}
        return {name}


class Discovery:
    """One run of `discover`: what it found and skipped, and each VG's room for snapshots."""

    def __init__(self, settings, runner, host: ProbeHost, hostname: str, progress=None,
                 stacks=None):
        self.settings = settings
        self.runner = runner            # discover's own reads: lvs, blkid, partx, a key's test
        self.stacks = stacks or runner  # the probe stacks' commands: the helper's policy
        self.host = host
        self.hostname = hostname
        self.progress = progress or (lambda line: None)
        self.found: list[Found] = []
        self.skipped: list[Skipped] = []
        self.spindle: dict[str, int] = {}
        self.overflowed: str | None = None      # why the current LV's probe snapshot is no good
        self.taken: dict[str, int | None] = {}   # origin -> bytes its snapshot took (None: thin)
        self.free: dict[str, int] = {}            # VG -> bytes free before any probe
        self.probes = 0                           # stacks set up for this LV
        self.deadline = 0.0                       # when this LV's walk stops

    def run(self, argv, accept=(0,)):
        return self.runner.run(list(argv), accept=accept)

    # -- the host's LVs ---------------------------------------------------------------------
    def lvs(self, vgs: list[str]) -> list[dict[str, str]]:
        res = self.run(["lvs", "-a", "--noheadings", "--nameprefixes", "--units", "b", "-o",
                        LV_FIELDS, *vgs])
        return parse_nameprefixes(res.stdout)

    def in_use(self, row: dict[str, str]) -> str | None:
        """Why the host itself uses this LV (mounted, swap, under another device), or None."""
        dev = f"/dev/mapper/{dm_name(row['vg_name'], row['lv_name'])}"
        if not self.host.exists(dev):
            return None
        rdev = self.host.rdev(dev)
        real = self.host.realpath(dev)
        # by source too: a btrfs is mounted under an anonymous major:minor
        mounted = [m["mountpoint"] for m in self.host.mounts() if m["majmin"] == rdev
                   or m["source"].startswith("/dev/") and self.host.realpath(m["source"]) == real]
        if mounted:
            return f"in use by this host: mounted at {mounted[0]}"
        try:
            swaps = [ln.split()[0] for ln in self.host.read("/proc/swaps").splitlines()[1:] if ln.split()]
        except OSError:         # a kernel without swap support
            swaps = []
        if real in swaps or dev in swaps:
            return "in use by this host: swap"
        holders = self.host.holders(dev)
        if holders:
            return f"in use by this host: {', '.join(sorted(holders))} lies on it"
        return None

    def discover(self, vgs: list[str], spindle: bool = True) -> None:
        start = time.monotonic()
        rows = self.lvs(vgs)
        todo = []
        for row in rows:
            if row.get("vg_free", "").rstrip("B").isdigit():
                self.free[row["vg_name"]] = int(row["vg_free"].rstrip("B"))
            if hidden(row["lv_name"]) or row["vg_name"].startswith(CLONE_PREFIX):
                continue            # LVM's own sub-LVs; a backup's renamed guest VG
            name = f"{row['vg_name']}/{row['lv_name']}"
            if row["lv_name"].endswith((self.settings.snap_suffix, ".amsnap")):
                continue            # a probe's or a backup's own snapshot, not the host's data
            why = origin_problem(row) or self.in_use(row)
            if why:
                self.skipped.append(Skipped(name, why))
            else:
                todo.append(row)
        for i, row in enumerate(todo, start=1):
            name = f"{row['vg_name']}/{row['lv_name']}"
            began, before = time.monotonic(), len(self.found)
            self.progress(f"[{i}/{len(todo)}] {name} ...")
            self.probe(row["vg_name"], row["lv_name"])
            self.progress(f"[{i}/{len(todo)}] {name}: {len(self.found) - before} filesystem(s) "
                          f"in {time.monotonic() - began:.1f} s")
        if spindle:
            self.spindle = spindles({f"{r['vg_name']}/{r['lv_name']}": set().union(
                *(self.host.disks(pv) for pv in physical_volumes(rows, r["vg_name"], r["lv_name"])))
                for r in todo})
        self.progress(f"{len(todo)} LV(s) probed in {time.monotonic() - start:.1f} s: "
                      f"{len(self.found)} filesystem(s), {len(self.skipped)} skipped")

    # -- one origin, layer by layer ----------------------------------------------------------
    def probe(self, vg: str, lv: str) -> None:
        chain: list[tuple[Stack, object]] = []      # the probes up now, bottom-up
        self.overflowed = None
        self.probes, self.deadline = 0, time.monotonic() + MAX_SECONDS
        try:
            self._walk([Lvm(vg, lv)], chain)
        finally:
            for stack, _ in reversed(chain):
                self._down(stack)
        if self.overflowed is not None:     # what was read through it proves nothing
            origin = f"{vg}/{lv}"
            self.found = [f for f in self.found if f.origin != origin]
            self.skipped = [s for s in self.skipped if s.where.split("/")[:2] != origin.split("/")]
            self.skipped.append(Skipped(origin, f"{self.overflowed}; give discover a larger --size"))

    def _stack(self, tokens) -> tuple[Stack, object]:
        device = f"{self.settings.mount_base}/{','.join(t.token() for t in tokens)}"
        spec = parse(device, self.settings.mount_base)      # the grammar's own refusals
        self.settings.check_device(spec)
        ctx = Context(self.stacks, self.host, self.settings, dle_id(CONFIG, self.hostname, device))
        return Stack(ctx, CONFIG, self.hostname, device), spec

    def _down(self, stack: Stack) -> None:
        try:
            stack.teardown(force=True)
        except SnapshotInvalid as err:      # torn down all the same
            self.overflowed = " ".join(str(err).split())
        except SnaplayersError as err:
            raise ProbeLeft(f"a probe could not be torn down: {err}; run 'snaplayers cleanup "
                            f"--state-dir {self.settings.state_dir} --sudo no'") from err

    def _walk(self, tokens, chain) -> None:
        where = disk_name(tokens)
        if self.probes >= MAX_PROBES or time.monotonic() > self.deadline:
            self.skipped.append(Skipped(where, f"not probed: this LV's walk reached its limit "
                                               f"({MAX_PROBES} probes, {MAX_SECONDS} s)"))
            return
        self.probes += 1
        try:
            stack, spec = self._stack(tokens)
            device = stack.setup(spec, mount=False)
        except SnaplayersError as err:
            self.skipped.append(Skipped(where, " ".join(str(err).split())))
            return
        chain.append((stack, spec))
        if len(tokens) == 1:    # the snapshot, as LVM made it at this size
            rec = (stack.journal.load() or {"layers": [{}]})["layers"][0]
            self.taken[f"{tokens[0].vg}/{tokens[0].lv}"] = None if rec.get("thin") else rec.get("taken_bytes")
        try:
            self._inside(tokens, device, chain)
        except ProbeLeft:
            raise
        except SnaplayersError as err:     # a command that failed on what the guest wrote
            self.skipped.append(Skipped(where, " ".join(str(err).split())))
        finally:
            chain.remove((stack, spec))
            self._down(stack)

    def _rebuild(self, chain) -> None:
        """A new snapshot under the same probes: vgimportclone renamed the guest VG in the old."""
        for stack, _ in reversed(chain):
            self._down(stack)
        for stack, spec in chain:
            stack.setup(spec, mount=False)

    def _inside(self, tokens, device: str, chain) -> None:
        res = self.run(["blkid", "--probe", "--output", "export", device], accept=(0, 2, 8))
        if res.returncode == 8:
            self.skipped.append(Skipped(disk_name(tokens), "several signatures at once (blkid: "
                                                       "ambivalent); wipe the stale one"))
            return
        info = parse_export(res.stdout)
        kind, table = info.get("TYPE", ""), info.get("PTTYPE", "")
        if kind in OPTIONS:
            self.found.append(Found(f"{self.settings.mount_base}/{','.join(t.token() for t in tokens)}",
                                    disk_name(tokens), kind, f"{tokens[0].vg}/{tokens[0].lv}"))
        elif kind == "linux_raid_member":
            self._walk([*tokens, Raid1()], chain)
        elif kind == "LVM2_member":
            for i, lv in enumerate(self._guest_lvs(tokens, device)):
                if i:
                    self._rebuild(chain)
                self._walk([*tokens, lv], chain)
        elif kind == "crypto_LUKS":
            key = self._key(device)
            if key is None:
                self.skipped.append(Skipped(disk_name(tokens), "a LUKS container that no key in "
                                                           f"{self.settings.key_dir} opens"))
            else:
                self._walk([*tokens, Luks(key)], chain)
        elif kind == "swap":
            self.skipped.append(Skipped(disk_name(tokens), "swap"))
        elif kind == "btrfs":
            self.skipped.append(Skipped(disk_name(tokens), "btrfs, which the plugin does not mount "
                                                       "(a multi-device btrfs is assembled from "
                                                       "whatever devices the host sees)"))
        elif kind:
            self.skipped.append(Skipped(disk_name(tokens), f"{kind}, not a filesystem the plugin "
                                                       f"mounts ({', '.join(sorted(OPTIONS))})"))
        elif table:
            numbers = self._partitions(tokens, device, table)
            for n in numbers:
                self._walk([*tokens, Part(n)], chain)
        else:
            self.skipped.append(Skipped(disk_name(tokens), "no filesystem (blkid finds nothing)"))

    def _partitions(self, tokens, device: str, table: str) -> list[int]:
        """The partitions to walk; none if they overlap (the same blocks read twice, a table
        made to fan out) or are too many."""
        res = self.run(["partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", device])
        rows = sorted(tuple(int(f) for f in line.split()) for line in res.stdout.splitlines()
                      if len(line.split()) == 3)
        why = (f"an empty {table} partition table" if not rows else
               f"a {table} table of {len(rows)} partitions, more than {MAX_PARTITIONS}"
               if len(rows) > MAX_PARTITIONS else None)
        spans = sorted((start, start + size, n) for n, start, size in rows)
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            if start < end:
                why = why or f"partitions {a} and {b} of its {table} table overlap"
        if why:
            self.skipped.append(Skipped(disk_name(tokens), why))
            return []
        return [n for n, _, _ in rows]

    def _guest_lvs(self, tokens, device: str) -> list[Vg]:
        """The guest VG's LVs, read through a filter that sees this one device: nothing is
        activated or renamed here (the vg layer does that, in the snapshot, under its name)."""
        conf = lvm_config(device)
        res = self.run(["pvs", "--config", conf, "--noheadings", "--nameprefixes", "-o",
                        "vg_name,pv_count", device], accept=(0, 5))
        pv = (parse_nameprefixes(res.stdout) or [{}])[0] if res.returncode == 0 else {}
        vg = pv.get("vg_name", "")
        if not vg:
            self.skipped.append(Skipped(disk_name(tokens), "an LVM PV in no volume group"))
            return []
        if pv.get("pv_count") != "1":
            self.skipped.append(Skipped(disk_name(tokens), f"the guest's volume group {vg} spans "
                                                       f"{pv.get('pv_count')} PVs; the snapshot "
                                                       "holds one"))
            return []
        res = self.run(["lvs", "--config", conf, "--noheadings", "--nameprefixes", "-o",
                        GUEST_LV_FIELDS, vg])
        out = []
        for row in parse_nameprefixes(res.stdout):
            token = Vg(vg, row["lv_name"])
            why = (f"a snapshot of {row['origin']}" if row.get("origin") else
                   f"a guest LV of type {row.get('segtype') or '?'} (lv_attr {row.get('lv_attr')}): "
                   f"only {' and '.join(GUEST_SEGTYPES)} LVs are activated"
                   if row.get("lv_attr", "")[:1] != "-" or row.get("segtype") not in GUEST_SEGTYPES
                   else None)
            if why:
                self.skipped.append(Skipped(disk_name([*tokens, token]), why))
            elif len(out) == MAX_GUEST_LVS:
                self.skipped.append(Skipped(disk_name([*tokens, token]),
                                            f"not probed: more than {MAX_GUEST_LVS} LVs in {vg}"))
            else:
                out.append(token)
        return out

    def _key(self, device: str) -> str | None:
        """The first key in key-dir that opens this container (cryptsetup tries it, opens nothing)."""
        key_dir = self.settings.key_dir
        try:
            _guard_luks([device, "probe"])      # tokens would open it without our key
        except Refused as err:
            raise SnaplayersError(f"not opened: {err}") from None
        try:
            names = sorted(os.path.basename(n)[:-4] for n in self.host.listdir(key_dir)
                           if n.endswith(".key"))
        except OSError:
            return None
        for name in names:
            if not KEY_NAME.match(name):      # the grammar's rule: luks=<key> could not name it
                continue
            res = self.run(["cryptsetup", "open", "--test-passphrase", "--key-file",
                            f"{key_dir}/{name}.key", device], accept=(0, 1, 2))
            if res.returncode == 0:
                return name
        return None

    # -- capacity --------------------------------------------------------------------------
    def capacity(self, maxdumps: int) -> list[dict]:
        """Per VG: whether it holds the snapshots of `maxdumps` DLEs at once, the largest ones,
        as LVM took them for the probes at the same size (DLEs of one LV share one snapshot)."""
        out = []
        origins = sorted({f.origin for f in self.found})
        for vg in sorted({o.split("/")[0] for o in origins}):
            mine = [o for o in origins if o.split("/")[0] == vg]
            thin = [o.split("/")[1] for o in mine if self.taken.get(o, 0) is None]
            sizes = sorted((self.taken[o] for o in mine if self.taken.get(o)), reverse=True)
            need = sum(sizes[:maxdumps])
            free = self.free.get(vg)
            out.append({"vg": vg, "free_bytes": free, "snapshots": len(sizes), "at_once": min(maxdumps, len(sizes)),
                        "need_bytes": need, "enough": free is not None and need <= free, "thin": thin})
        return out

    @staticmethod
    def capacity_line(c: dict, size: str) -> str:
        free = mib(c["free_bytes"]) if c["free_bytes"] is not None else "unknown"
        verdict = "enough" if c["enough"] else "NOT ENOUGH: it would run out"
        line = (f"VG {c['vg']}: {free} free; {c['snapshots']} snapshot(s) at size {size}, the "
                f"{c['at_once']} largest at once take {mib(c['need_bytes'])}: {verdict}")
        return line + (f"; thin, from their pool: {', '.join(c['thin'])}" if c["thin"] else "")

    # -- what it prints ---------------------------------------------------------------------
    def disklist(self, dumptype: str, maxdumps: int = 1) -> str:
        lines = [f"# snaplayers discover on {self.hostname}: {len(self.found)} filesystem(s), "
                 f"{len(self.skipped)} skipped"]
        lines += [f"# capacity, maxdumps {maxdumps}: {self.capacity_line(c, self.settings.size)}"
                  for c in self.capacity(maxdumps)]
        for f in sorted(self.found, key=lambda f: f.disk):
            lines.append(f"{self.hostname} {f.disk} {f.device} {dumptype} "
                         f"{self.spindle.get(f.origin, -1)}")
        for s in sorted(self.skipped, key=lambda s: s.where):
            # one line each, whatever a guest's names put into a layer's message
            lines.append(f"# skipped {' '.join(s.where.split())}: {' '.join(s.why.split())}")
        return "\n".join(lines) + "\n"

    def as_json(self, dumptype: str, maxdumps: int = 1) -> dict:
        return {"host": self.hostname, "size": self.settings.size, "maxdumps": maxdumps,
                "capacity": self.capacity(maxdumps),
                "entries": [{**f.as_dict(), "dumptype": dumptype,
                             "spindle": self.spindle.get(f.origin, -1)}
                            for f in sorted(self.found, key=lambda f: f.disk)],
                "skipped": [s.as_dict() for s in sorted(self.skipped, key=lambda s: s.where)]}

