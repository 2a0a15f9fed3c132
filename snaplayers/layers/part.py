"""`part=<n>`: partition n of the device below, as a device-mapper linear mapping.

A mapping rather than the kernel's own /dev/mdXpN or a kpartx/loop device: dmsetup ships with
lvm2, which this stack needs anyway; the name is ours, so the privileged helper can allow mounting
only snaplayers' devices (a kernel partition name could be a live array's); it stays writable
like the snapshot under it, so the mount layer can replay the journal into it.
"""

from __future__ import annotations

from . import DM_PREFIX, Layer


def depth(layer) -> int:
    n = 0
    while layer is not None:
        n, layer = n + 1, layer.parent
    return n


class Partition(Layer):
    kind = "part"
    tools = ("partx", "blockdev", "dmsetup")
    names = {"MAPNAME": DM_PREFIX + "{ID}-[0-9]{1,2}p[0-9]{1,3}", "MAPDEV": "/dev/mapper/{MAPNAME}"}
    offers = "{MAPDEV}"
    privileged = (
        ("partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", "--nr",
         "[0-9]{1,3}", "{DEV}"),
        ("blockdev", "--getsz", "{DEV}"),
        ("dmsetup", "create", "{MAPNAME}", "--table", "0 [0-9]+ linear {DEV} [0-9]+"),
        ("dmsetup", "mknodes", "{MAPNAME}"),
        ("dmsetup", "table", "{MAPNAME}"),
        ("dmsetup", "remove", "--retry", "{MAPNAME}"),
    )

    @classmethod
    def plan(cls, ctx, token, parent, spec):
        # the id names the layers under it too, so `part=1,raid1,part=1` names two mappings
        mapping = f"{DM_PREFIX}{cls.id_for(parent, token)}-{depth(parent)}p{token.number}"
        return cls(ctx, {"kind": cls.kind, "token": token.token(), "state": "planned",
                         "number": token.number, "parent": parent.device, "mapping": mapping,
                         "device": f"/dev/mapper/{mapping}"}, parent)

    def kernel_names(self):
        return {"dm": self.rec["mapping"], "device": self.rec["device"]}

    def _pre_setup(self):
        n, parent = self.rec["number"], self.rec["parent"]
        res = self.run("partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS",
                       "--nr", str(n), parent, accept=(0, 1))
        fields = res.stdout.split()
        if res.returncode != 0 or len(fields) != 3 or fields[0] != str(n):
            raise self.fail(f"{parent} has no partition {n}")
        start, size = int(fields[1]), int(fields[2])
        total = int(self.run("blockdev", "--getsz", parent).stdout.strip())
        if start <= 0 or size <= 0 or start + size > total:
            raise self.fail(f"partition {n} (start {start}, {size} sectors) lies outside "
                            f"{parent} ({total} sectors)")
        # dmsetup prints the parent as major:minor: kept to check identity at tear-down
        self.rec.update(start=start, sectors=size,
                        table=f"0 {size} linear {self.ctx.host.rdev(parent)} {start}")

    def _setup(self):
        table = f"0 {self.rec['sectors']} linear {self.rec['parent']} {self.rec['start']}"
        self.run("dmsetup", "create", self.rec["mapping"], "--table", table)

    def _post_setup(self):
        # Without udev (a container, a rescue system) libdevmapper leaves /dev/mapper to us, and
        # a node left from an earlier mapping of this name points at the wrong minor (measured):
        # mknodes makes the node match the kernel; with udev it changes nothing.
        self.run("dmsetup", "mknodes", self.rec["mapping"])
        if not self.ctx.host.wait_for(self.rec["device"]):
            raise self.fail(f"{self.rec['device']} did not appear")

    def _live(self):
        res = self.run("dmsetup", "table", self.rec["mapping"], accept=(0, 1))
        return res.stdout.strip() if res.returncode == 0 else None

    def _teardown(self, table):
        if table != self.rec.get("table"):
            raise self.fail(f"mapping {self.rec['mapping']} is {table!r}, not "
                            f"{self.rec.get('table')!r} as created; not removing it")
        # --retry: a just-unmounted filesystem can hold the device for a moment (measured)
        self.run("dmsetup", "remove", "--retry", self.rec["mapping"])
        self.run("dmsetup", "mknodes", self.rec["mapping"])     # drops a node udev would have
