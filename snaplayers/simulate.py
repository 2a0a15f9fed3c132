"""A simulated storage host for `snaplayers plan`: it answers the layers' commands and live reads
from a model in which everything the device field names exists.

The plan runs the real stack code against it, so the plan is the argv sequence the plugin
runs; what only a real run can know (a fresh UUID, the md node the kernel picks, the partition
table's numbers, the DLE's identity when not given) is printed as a placeholder. It never
stands in for the real stack as proof: the testbed does that.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex

from .device import DeviceSpec, dm_name
from .layers import Context, Host
from .props import Settings
from .record import Record
from .run import ScriptedRunner
from .stack import Stack, dle_id

GiB = 2**30
GiB_SECTORS = GiB // 512
FRESH_UUID = "<fresh uuid>"
MD_NODE = "<md node>"
PART_START = "<partition start>"
PART_SECTORS = "<partition sectors>"


class SimulatedSystem(Host):
    def __init__(self, fstype: str = "ext4", thin: bool = False, suffix: str = ".amsnap"):
        self.fstype = fstype            # what blkid finds on the top device
        self.thin = thin                # the origin LV is a thin one
        self.suffix = suffix
        self.lvs: dict[str, dict] = {}
        self.arrays: dict[str, dict] = {}           # /dev/md/NAME -> {uuid, level, kernel}
        self.mappings: dict[str, str] = {}          # dm name -> table
        self.mount_rows: list[dict] = []
        self.dirs = set()
        self.next_md = 127
        # guest LVM: PV device -> {vg_name, vg_uuid, pv_count}; VG -> {LV: active}
        self.pvs: dict[str, dict] = {}
        self.guest_lvs: dict[str, dict[str, bool]] = {}
        self.guest = ("vg0", ["root", "swap"])      # what any PV holds
        self.crypts: dict[str, str] = {}            # open mapping -> device
        self.next_uuid = 0
        self.answered = 0                           # commands answered so far
        # (first command it can appear in, value, placeholder): what this host made up
        self.made_up: list[tuple[int, str, str]] = []

    # -- model helpers --------------------------------------------------------------------
    def add_lv(self, vg: str, lv: str, attr: str = "-wi-ao----", origin: str = "",
               segtype: str = "linear") -> None:
        self.lvs[f"{vg}/{lv}"] = {"lv_name": lv, "lv_attr": attr, "origin": origin,
                                  "segtype": segtype, "data_percent": "", "pool_lv": "",
                                  # a 1 GiB LV in a VG with 10 GiB free, 4 MiB extents
                                  "lv_size": f"{GiB}B", "vg_free": f"{10 * GiB}B",
                                  "vg_extent_size": f"{4 * 2**20}B"}

    def add_thin_lv(self, vg: str, lv: str, pool: str = "pool0") -> None:
        """As LVM has them: a thin LV written whole reports Data% 100, its normal state."""
        self.add_lv(vg, lv, attr="Vwi-aotz--", segtype="thin")
        self.lvs[f"{vg}/{lv}"].update(data_percent="100.00", pool_lv=pool)
        if f"{vg}/{pool}" not in self.lvs:
            self.add_lv(vg, pool, attr="twi-aotz--", segtype="thin-pool")
            self.lvs[f"{vg}/{pool}"]["data_percent"] = "57.00"

    def add_dir(self, path: str) -> None:
        while path not in ("/", "") and path not in self.dirs:
            self.dirs.add(path)
            path = os.path.dirname(path)

    def runner(self, sudo: str = "no") -> ScriptedRunner:
        return ScriptedRunner(self.answer, sudo=sudo)

    def expect(self, spec) -> None:
        """Answers that fit a device field: its guest VG is on whatever PV is asked."""
        for layer in spec.layers:
            if layer.kind == "vg":
                self.guest = (layer.vg, [layer.lv, "swap"])

    def make_up(self, value: str, placeholder: str) -> str:
        """A value only a real run knows: from this command on, the plan shows the placeholder."""
        self.made_up.append((self.answered - 1, value, placeholder))
        return value

    # what is there: everything asked for (the steered host of the unit tests narrows these)
    def _lv(self, name: str) -> dict | None:
        if name not in self.lvs and "/" in name:
            vg, lv = name.split("/", 1)
            if not lv.endswith(self.suffix):
                if self.thin:
                    self.add_thin_lv(vg, lv)
                else:
                    self.add_lv(vg, lv)
        return self.lvs.get(name)

    def _member_level(self, dev: str) -> str | None:
        return "raid1"

    def _table(self, dev: str) -> dict[int, tuple]:
        return {n: (2048 * n, GiB_SECTORS // 4) for n in range(1, 129)}

    def _fstype(self, dev: str) -> str | None:
        return self.fstype

    def _is_luks(self, dev: str) -> bool:
        return True

    def _opens(self, dev: str, key_file: str) -> bool:
        return True

    def _pv(self, dev: str) -> dict | None:
        if dev not in self.pvs:
            vg, lvs = self.guest
            self.pvs[dev] = {"pv_name": dev, "vg_name": vg, "vg_uuid": self._uuid(), "pv_count": "1"}
            self.guest_lvs.setdefault(vg, {lv: False for lv in lvs})
        return self.pvs.get(dev)

    # -- commands -------------------------------------------------------------------------
    def answer(self, argv: list[str]) -> tuple | None:
        self.answered += 1
        handler = getattr(self, "_cmd_" + argv[0].replace("-", "_"), None)
        return handler(argv[1:]) if handler else (127, "")

    def _uuid(self) -> str:
        self.next_uuid += 1
        return f"GuestV-gUUI-D{self.next_uuid:04d}"

    def _cmd_pvs(self, args):
        pv = self._pv(args[-1])
        return (0, "  " + " ".join(f"LVM2_{k.upper()}='{v}'" for k, v in pv.items()) + "\n") \
            if pv else (5, "")

    def _cmd_vgimportclone(self, args):
        pv, clone = self._pv(args[-1]), args[args.index("--basevgname") + 1]
        if pv is None or clone in self.guest_lvs and clone != pv["vg_name"]:
            return (5, "")
        self.guest_lvs[clone] = dict(self.guest_lvs.get(pv["vg_name"], {}))
        pv.update(vg_name=clone, vg_uuid=self._uuid())
        return (0, "")

    def _guest_lvs(self, args):
        vg = args[-1]
        uuid = next((p["vg_uuid"] for p in self.pvs.values() if p["vg_name"] == vg), None)
        if uuid is None:
            return (5, "")
        return (0, "".join(f"  LVM2_LV_NAME='{lv}' LVM2_LV_ATTR='-wi-{'a' if on else '-'}-----' "
                           f"LVM2_VG_UUID='{uuid}' LVM2_SEGTYPE='linear'\n"
                           for lv, on in self.guest_lvs[vg].items()))

    def _cmd_lvchange(self, args):
        vg, lv = args[-1].split("/", 1)
        if lv not in self.guest_lvs.get(vg, {}):
            return (5, "")
        self.guest_lvs[vg][lv] = True
        return (0, "")

    def _cmd_vgchange(self, args):
        if args[-1] not in self.guest_lvs:
            return (5, "")
        self.guest_lvs[args[-1]] = dict.fromkeys(self.guest_lvs[args[-1]], False)
        return (0, "")

    def _cmd_cryptsetup(self, args):
        op = args[0]
        if op == "isLuks":
            return (0, "") if self._is_luks(args[1]) else (1, "")
        if op == "open":
            dev, name, key = args[-2], args[-1], args[args.index("--key-file") + 1]
            if not self._opens(dev, key):
                return (2, "")
            self.crypts[name] = dev
            return (0, "")
        if op == "status":
            dev = self.crypts.get(args[1])
            return (0, f"/dev/mapper/{args[1]} is active.\n  type:    LUKS2\n  device:  {dev}\n"
                       "  mode:    read/write\n") if dev else (4, "")
        if op == "close":
            return (0, "") if self.crypts.pop(args[1], None) else (4, "")
        return (1, "")

    def _cmd_lvs(self, args):
        if "--config" in args:
            return self._guest_lvs(args)
        lv = self._lv(args[-1])
        if lv is None:
            return (5, "")
        return (0, "  " + " ".join(f"LVM2_{k.upper()}='{v}'" for k, v in lv.items()) + "\n")

    def _cmd_lvcreate(self, args):
        name = args[args.index("--name") + 1]
        vg, origin = args[-1].split("/", 1)
        thin = "--setactivationskip" in args
        self.add_lv(vg, name, attr="Vwi-a-tz--" if thin else "swi-a-s---", origin=origin,
                    segtype="thin" if thin else "linear")
        # a thin snapshot shares its origin's blocks: its Data% is the origin's
        of = self.lvs.get(f"{vg}/{origin}", {})
        self.lvs[f"{vg}/{name}"].update(data_percent=of.get("data_percent") if thin else "0.01",
                                        pool_lv=of.get("pool_lv", "") if thin else "")
        return (0, "")

    def _cmd_snapshot_set(self, args):
        """The helper's snapshot-set as it ends when all goes well: every snapshot made."""
        suffix, size, origins = args[1], args[3], args[4:]
        for origin in origins:      # copy-on-write, thin or not
            snap = origin.partition("/")[2] + suffix
            code, _ = self._cmd_lvcreate(["--snapshot", "--name", snap, "--size", size, origin])
            if code:
                return (code, "")
        return (0, f"origins held 0.001 s for {len(origins)} of {len(origins)} snapshot(s)\n")

    def _cmd_lvremove(self, args):
        return (0, "") if self.lvs.pop(args[-1], None) else (5, "")

    def _cmd_mdadm(self, args):
        op, dev = args[0], args[2] if args[0] in ("--examine", "--detail") else args[1]
        if op == "--examine":
            level = self._member_level(dev)
            return (0, f"MD_LEVEL={level}\nMD_DEVICES=2\nMD_UUID=11111111:22222222:33333333:44444444\n") \
                if level else (1, "")
        if op == "--detail":
            arr = self.arrays.get(dev)
            return (0, f"MD_LEVEL={arr['level']}\nMD_UUID={arr['uuid']}\n") if arr else (1, "")
        if op == "--assemble":
            uuid = self.make_up(next(a for a in args if a.startswith("--uuid="))[7:], FRESH_UUID)
            kernel = f"md{self.next_md}"
            self.make_up(f"/dev/{kernel}", MD_NODE)
            self.arrays[dev] = {"uuid": uuid, "level": "raid1", "kernel": kernel, "member": args[-1]}
            self.next_md -= 1
            return (0, "")
        if op == "--stop":
            return (0, "") if self.arrays.pop(dev, None) else (1, "")
        return (1, "")

    def _cmd_rm(self, args):
        return (0, "")

    def _cmd_partx(self, args):
        dev, n = args[-1], int(args[args.index("--nr") + 1])
        entry = self._table(dev).get(n)
        if not entry:
            return (1, "")
        start = self.make_up(str(entry[0]), PART_START)
        sectors = self.make_up(str(entry[1]), PART_SECTORS)
        return (0, f"{n} {start} {sectors}\n")

    def _cmd_blockdev(self, args):
        return (0, f"{GiB_SECTORS}\n")

    def _cmd_dmsetup(self, args):
        op, name = args[0], (args[1] if args[0] == "create" else args[-1])
        if op == "mknodes":
            return (0, "")
        if op == "create":
            start_table = args[args.index("--table") + 1].split()
            start_table[3] = self.rdev(start_table[3])
            self.mappings[name] = " ".join(start_table)
            return (0, "")
        if op == "table":
            return (0, self.mappings[name] + "\n") if name in self.mappings else (1, "")
        if op == "remove":
            return (0, "") if self.mappings.pop(name, None) else (1, "")
        return (1, "")

    def _cmd_blkid(self, args):
        fstype = self._fstype(args[-1])
        return (0, f"DEVNAME={args[-1]}\nTYPE={fstype}\n") if fstype else (2, "")

    def _cmd_mount(self, args):
        src, mp = args[-2], args[-1]
        self.mount_rows.append({"majmin": self.rdev(src), "mountpoint": mp,
                                "options": args[args.index("-o") + 1], "fstype": args[2],
                                "source": src})
        return (0, "")

    def _cmd_mkdir(self, args):
        if posixpath.dirname(args[-1]) not in self.dirs or args[-1] in self.dirs:
            return (1, "")
        self.dirs.add(args[-1])
        return (0, "")

    def _cmd_rmdir(self, args):
        if args[-1] not in self.dirs or self.listdir(args[-1]):
            return (1, "")
        self.dirs.discard(args[-1])
        return (0, "")

    def _cmd_umount(self, args):
        before = len(self.mount_rows)
        self.mount_rows = [m for m in self.mount_rows if m["mountpoint"] != args[-1]]
        return (0, "") if len(self.mount_rows) < before else (32, "")

    # -- live reads (Host) ----------------------------------------------------------------
    def _kernel_nodes(self) -> dict[str, str]:
        nodes = {}
        for path, arr in self.arrays.items():
            nodes[path] = f"/dev/{arr['kernel']}"
            nodes[f"/dev/{arr['kernel']}"] = f"/dev/{arr['kernel']}"
        for name in self.lvs:
            node = "/dev/mapper/" + dm_name(*name.split("/", 1))
            nodes[node] = node
        for name in [*self.mappings, *self.crypts]:
            nodes[f"/dev/mapper/{name}"] = f"/dev/mapper/{name}"
        for vg, lvs in self.guest_lvs.items():
            for lv, active in lvs.items():
                if active:
                    nodes["/dev/mapper/" + dm_name(vg, lv)] = "/dev/mapper/" + dm_name(vg, lv)
        return nodes

    def exists(self, path):
        return path in self.dirs or path in self._kernel_nodes()

    def realpath(self, path):
        return self._kernel_nodes().get(path, posixpath.normpath(path))

    def read(self, path):
        raise FileNotFoundError(path)

    def rdev(self, path):
        return f"253:{sum(path.encode()) % 200}"

    def holders(self, path):
        return [a["kernel"] for a in self.arrays.values() if a["member"] == path]

    def isdir(self, path):
        return path in self.dirs

    def listdir(self, path):
        return [d for d in self.dirs if posixpath.dirname(d) == path]

    def unsafe_dir(self, path):
        return None if path in self.dirs else f"{path}: No such file or directory"

    def mounts(self):
        return list(self.mount_rows)

    def sleep(self, seconds):
        pass

    def caller(self):
        return {"pid": None, "start": None}     # no Amanda process behind a plan

    def wait_for(self, path, seconds=10.0):
        return self.exists(path)


class Plan(Record):
    """A set-up and tear-down as run against a simulated host."""

    setup: list             # each argv as run, with the simulated host's values in it
    teardown: list
    made_up: list           # (first command it can appear in, value, placeholder)

    def lines(self) -> tuple[list[str], list[str]]:
        """Each command as a shell line, with placeholders for what only a real run knows."""
        shown = [self._show(i, shlex.join(argv)) for i, argv in enumerate(self.setup + self.teardown)]
        return shown[:len(self.setup)], shown[len(self.setup):]

    def _show(self, index: int, line: str) -> str:
        for first, value, placeholder in self.made_up:
            if first <= index:      # an earlier command's own words are never made up
                line = re.sub(rf"(?<![^\s='])({re.escape(value)})(?![^\s'])", placeholder, line)
        return line


def plan(spec: DeviceSpec, settings: Settings, system: SimulatedSystem, config: str | None = None,
         host: str | None = None, disk: str | None = None) -> Plan:
    """Set up and tear down spec's stack on system, named as Amanda's call for that DLE names it
    (disk defaults to the device field, as when a disklist entry names no other)."""
    disk = disk or spec.format()
    ident = dle_id(config or "", host or "", disk)
    system.suffix = settings.snap_suffix
    system.add_dir(spec.mount_base)
    system.expect(spec)
    runner = system.runner()
    before = system.answered, len(system.made_up)
    stack = Stack(Context(runner, system, settings, ident), config or "", host or "", disk)
    stack.setup(spec)
    n_setup = len(runner.executed)
    stack.teardown()
    made_up = [(first - before[0], value, shown) for first, value, shown in system.made_up[before[1]:]]
    return Plan(runner.executed[:n_setup], runner.executed[n_setup:], made_up)
