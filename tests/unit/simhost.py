"""The simulated storage host as the unit tests steer it: strict answers, failures injected into
any command, a host without udev, and the Amanda process that made a stack."""

from __future__ import annotations

from typing import Callable

from snaplayers.simulate import SimulatedSystem

AMANDA_PID = 4242


class SteeredSystem(SimulatedSystem):
    def __init__(self, permissive: bool = True, **kwargs):
        super().__init__(**kwargs)
        # permissive: every LV asked for exists, every member is raid1, every partition exists
        self.permissive = permissive
        self.members: dict[str, str] = {}           # device -> md level its superblock says
        self.tables: dict[str, dict[int, tuple]] = {}  # device -> {n: (start, sectors)}
        self.fstypes: dict[str, str] = {}
        self.luks: dict[str, str] = {}              # device -> the key file that opens it
        self.inject: Callable[[list[str]], tuple | None] | None = None
        self.udev = True                            # False: stopped arrays' links linger
        self.lingering: set = set()
        self.processes: dict[int, str] = {AMANDA_PID: "777"}   # pid -> start time

    def answer(self, argv):
        reply = self.inject(argv) if self.inject else None
        return reply if reply is not None else super().answer(argv)

    # -- what is there: what the test set, and everything else only when permissive ----------
    def _lv(self, name):
        return super()._lv(name) if self.permissive else self.lvs.get(name)

    def _member_level(self, dev):
        return self.members.get(dev, "raid1" if self.permissive else None)

    def _table(self, dev):
        return self.tables.get(dev) or (super()._table(dev) if self.permissive else {})

    def _fstype(self, dev):
        return self.fstypes.get(dev, self.fstype if self.permissive else None)

    def _is_luks(self, dev):
        return dev in self.luks or self.permissive

    def _opens(self, dev, key_file):
        return self.luks.get(dev, key_file) == key_file

    def _pv(self, dev):
        return super()._pv(dev) if self.permissive or dev in self.pvs else None

    # -- the kernel refuses to remove a device something still holds ------------------------
    def _in_use(self, dev):
        rdev = self.rdev(dev)
        return (any(a["member"] == dev for a in self.arrays.values())
                or any(table.split()[3] == rdev for table in self.mappings.values())
                or any(parent == dev for parent in self.crypts.values())
                or any(m["source"] == dev or m["majmin"] == rdev for m in self.mount_rows))

    def _cmd_lvremove(self, args):
        from snaplayers.device import dm_name
        if self._in_use("/dev/mapper/" + dm_name(*args[-1].split("/", 1))):
            return (5, "  Logical volume in use.\n")
        return super()._cmd_lvremove(args)

    def _cmd_dmsetup(self, args):
        if args[0] == "remove" and self._in_use(f"/dev/mapper/{args[-1]}"):
            return (1, "device-mapper: remove ioctl failed: Device or resource busy\n")
        return super()._cmd_dmsetup(args)

    # -- a host without udev: nobody removes a stopped array's /dev/md link ----------------
    def _cmd_mdadm(self, args):
        arr = self.arrays.get(args[1]) if args[0] == "--stop" else None
        if arr and self._in_use(f"/dev/{arr['kernel']}"):
            return (1, f"mdadm: Cannot get exclusive access to {args[1]}\n")
        reply = super()._cmd_mdadm(args)
        if args[0] == "--stop" and reply[0] == 0 and not self.udev:
            self.lingering.add(args[1])
        return reply

    def _cmd_rm(self, args):
        self.lingering.discard(args[-1])
        return super()._cmd_rm(args)

    # -- the Amanda process (sendbackup) that runs the PRE and POST calls -------------------
    def caller(self):
        return {"pid": AMANDA_PID, "start": self.processes.get(AMANDA_PID)}

    def _start_time(self, pid):
        return self.processes.get(pid)
