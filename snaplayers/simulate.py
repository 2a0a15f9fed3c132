"""A simulated storage host: answers the layers' commands and live reads from a model.

`snaplayers plan` runs the real stack code against it (so the plan is the exact argv sequence
the plugin would run), and unit tests use it to pin argv sequences and inject failures. It
never stands in for the real stack as proof: the testbed does that.
"""

from __future__ import annotations

import os
import posixpath
from typing import Callable

from .device import dm_name
from .layers import Host
from .run import ScriptedRunner

GiB_SECTORS = 2 * 1024 * 1024


class SimulatedSystem(Host):
    def __init__(self, permissive: bool = True, fstype: str = "ext4", suffix: str = ".amsnap"):
        # permissive: every LV asked for exists, every member is raid1, every partition exists
        self.permissive = permissive
        self.suffix = suffix
        self.fstype = fstype
        self.lvs: dict[str, dict] = {}
        self.members: dict[str, str] = {}           # device -> md level its superblock says
        self.tables: dict[str, dict[int, tuple]] = {}  # device -> {n: (start, sectors)}
        self.fstypes: dict[str, str] = {}
        self.arrays: dict[str, dict] = {}           # /dev/md/NAME -> {uuid, level, kernel}
        self.mappings: dict[str, str] = {}          # dm name -> table
        self.mount_rows: list[dict] = []
        self.dirs = set()
        self.udev = True                            # False: stopped arrays' links linger
        self.lingering: set = set()
        self.processes: dict[int, str] = {4242: "777"}   # pid -> start time; 4242 is Amanda's
        self.inject: Callable[[list[str]], tuple | None] | None = None
        self.next_md = 127
        # guest LVM: PV device -> {vg_name, vg_uuid, pv_count}; VG -> {LV: active}
        self.pvs: dict[str, dict] = {}
        self.guest_lvs: dict[str, dict[str, bool]] = {}
        self.guest = ("vg0", ["root", "swap"])      # permissive: what any PV holds
        self.luks: dict[str, str] = {}              # device -> the key file that opens it
        self.crypts: dict[str, str] = {}            # open mapping -> device
        self.next_uuid = 0

    # -- model helpers --------------------------------------------------------------------
    def add_lv(self, vg: str, lv: str, attr: str = "-wi-ao----", origin: str = "",
               segtype: str = "linear") -> None:
        self.lvs[f"{vg}/{lv}"] = {"lv_name": lv, "lv_attr": attr, "origin": origin,
                                  "segtype": segtype, "data_percent": ""}

    def runner(self, sudo: str = "no") -> ScriptedRunner:
        return ScriptedRunner(self.answer, sudo=sudo)

    def _lv(self, name: str) -> dict | None:
        if name not in self.lvs and self.permissive and "/" in name:
            vg, lv = name.split("/", 1)
            if not lv.endswith(self.suffix):
                self.add_lv(vg, lv)
        return self.lvs.get(name)

    def _member_level(self, dev: str) -> str | None:
        return self.members.get(dev, "raid1" if self.permissive else None)

    def _table(self, dev: str) -> dict[int, tuple]:
        return self.tables.get(dev) or ({n: (2048 * n, GiB_SECTORS // 4) for n in range(1, 129)}
                                        if self.permissive else {})

    # -- commands -------------------------------------------------------------------------
    def answer(self, argv: list[str]) -> tuple | None:
        if self.inject:
            reply = self.inject(argv)
            if reply is not None:
                return reply
        handler = getattr(self, "_cmd_" + argv[0], None)
        return handler(argv[1:]) if handler else (127, "")

    def expect(self, spec) -> None:
        """Permissive answers that fit a device field: its guest VG is on whatever PV is asked."""
        for layer in spec.layers:
            if layer.kind == "vg":
                self.guest = (layer.vg, [layer.lv, "swap"])

    def _uuid(self) -> str:
        self.next_uuid += 1
        return f"GuestV-gUUI-D{self.next_uuid:04d}"

    def _pv(self, dev: str) -> dict | None:
        if dev not in self.pvs and self.permissive:
            vg, lvs = self.guest
            self.pvs[dev] = {"pv_name": dev, "vg_name": vg, "vg_uuid": self._uuid(), "pv_count": "1"}
            self.guest_lvs.setdefault(vg, {lv: False for lv in lvs})
        return self.pvs.get(dev)

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
                           f"LVM2_VG_UUID='{uuid}'\n" for lv, on in self.guest_lvs[vg].items()))

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
            return (0, "") if args[1] in self.luks or self.permissive else (1, "")
        if op == "open":
            dev, name, key = args[-2], args[-1], args[args.index("--key-file") + 1]
            if self.luks.get(dev, key) != key:
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
        self.lvs[f"{vg}/{name}"]["data_percent"] = "0.01"
        return (0, "")

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
            uuid = next(a for a in args if a.startswith("--uuid="))[7:]
            self.arrays[dev] = {"uuid": uuid, "level": "raid1", "kernel": f"md{self.next_md}",
                                "member": args[-1]}
            self.next_md -= 1
            return (0, "")
        if op == "--stop":
            if not self.arrays.pop(dev, None):
                return (1, "")
            if not self.udev:
                self.lingering.add(dev)     # nobody removes the /dev/md link
            return (0, "")
        return (1, "")

    def _cmd_rm(self, args):
        self.lingering.discard(args[-1])
        return (0, "")

    def _cmd_partx(self, args):
        dev, n = args[-1], int(args[args.index("--nr") + 1])
        entry = self._table(dev).get(n)
        return (0, f"{n} {entry[0]} {entry[1]}\n") if entry else (1, "")

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
        fstype = self.fstypes.get(args[-1], self.fstype if self.permissive else None)
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
        return {"pid": 4242, "start": self.processes.get(4242)}

    def _start_time(self, pid):
        return self.processes.get(pid)

    def wait_for(self, path, seconds=10.0):
        return self.exists(path)

    def add_dir(self, path: str) -> None:
        while path not in ("/", "") and path not in self.dirs:
            self.dirs.add(path)
            path = os.path.dirname(path)
