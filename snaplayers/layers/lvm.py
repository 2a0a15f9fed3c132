"""`lvm=<vg>+<lv>`: a copy-on-write snapshot `<lv><suffix>` of a logical volume."""

from __future__ import annotations

import re

from .. import log as debug_log
from ..helper import SET
from ..device import LV_RESERVED, LV_RESERVED_PREFIX, dm_name
from ..errors import SnapshotInvalid
from . import Layer, parse_nameprefixes

# the VG's free space and extent size come with the LV: room for the snapshot, in one call
FIELDS = "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size"
log = debug_log.get("snaplayers.lvm")
# lv_attr[0] types that are not an ordinary origin: snapshots, pools, pool/raid metadata,
# pvmove, mirror/raid images and logs, virtual origins.
_NOT_AN_ORIGIN = set("sStdepIilv")
# lv_attr[8], health, of a thin LV or pool that no longer reads as it was written
THIN_FAILED = set("FMXp")
THIN_HEALTH = "F failed, M metadata read-only, X unknown, p a PV missing"
MAX_SET = 8             # origins in one snapshot-set (a group: a VM's disks)
SET_ORIGINS = ("-", "o", "V")   # lv_attr[0] the helper's snapshot-set takes: plain, origin, thin


class LvSnapshot(Layer):
    kind = "lvm"
    tools = ("lvs", "lvcreate", "lvremove", "dmsetup")     # dmsetup: a group's snapshot-set
    names = {
        # an LV of the host's own, never one LVM makes inside a pool, raid or snapshot
        "ORIGIN": f"(?!{'|'.join(LV_RESERVED_PREFIX)})(?!.*(?:{'|'.join(LV_RESERVED)})){{NAME}}",
        "SNAPSHOT": "{ORIGIN}{SUFFIX}", "SNAPDEV": "/dev/mapper/{DMNAME}-{DMNAME}{SUFFIX}"}
    offers = "{SNAPDEV}"
    privileged = (
        ("lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o", re.escape(FIELDS),
         "{NAME}/{NAME}"),
        ("lvcreate", "--snapshot", "--name", "{SNAPSHOT}", "--size", "{SIZE}", "{NAME}/{ORIGIN}"),
        ("lvcreate", "--snapshot", "--name", "{SNAPSHOT}", "--extents", "{EXTENTS}",
         "{NAME}/{ORIGIN}"),
        ("lvcreate", "--snapshot", "--name", "{SNAPSHOT}", "--setactivationskip", "n",
         "{NAME}/{ORIGIN}"),
        ("lvremove", "--yes", "{NAME}/{SNAPSHOT}"),
        # a group's snapshots at one instant: the helper suspends, snapshots and resumes itself
        *((SET, "--suffix", "{SUFFIX}", "--size", "(?:{SIZE}|{EXTENTS})", *["{NAME}/{ORIGIN}"] * n)
          for n in range(2, MAX_SET + 1)),
    )

    @classmethod
    def plan(cls, ctx, token, parent, spec):
        snap = token.lv + ctx.settings.snap_suffix
        return cls(ctx, {
            "kind": cls.kind, "token": token.token(), "state": "planned",
            "vg": token.vg, "origin": token.lv, "snapshot": snap,
            # /dev/mapper is root's alone: the helper can admit it, unlike /dev/<vg> (/dev/shm...)
            "device": f"/dev/mapper/{dm_name(token.vg, snap)}", "size": ctx.settings.size,
        }, parent)

    def key(self):
        return f"{self.rec['vg']}/{self.rec['snapshot']}"    # whichever DLE names it

    def kernel_names(self):
        vg, snap = self.rec["vg"], self.rec["snapshot"]
        return {"lv": f"{vg}/{snap}", "dm": dm_name(vg, snap), "device": self.rec["device"]}

    def lvs(self, lv: str) -> dict[str, str] | None:
        """One LV's fields, or None if LVM does not know it (lvs exits 5)."""
        res = self.run("lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o", FIELDS,
                       f"{self.rec['vg']}/{lv}", accept=(0, 5))
        rows = parse_nameprefixes(res.stdout) if res.returncode == 0 else []
        return rows[0] if rows else None

    def _pre_setup(self):
        origin = self.lvs(self.rec["origin"])
        where = f"{self.rec['vg']}/{self.rec['origin']}"
        if origin is None:
            raise self.fail(f"logical volume {where} does not exist")
        attr = origin.get("lv_attr", "-")
        if origin.get("origin") or attr[:1] in _NOT_AN_ORIGIN:
            raise self.fail(f"{where} is not an origin volume (lv_attr {attr}, "
                            f"origin {origin.get('origin') or '-'}); snapshots are not snapshotted")
        if self.rec.get("in_set") and attr[:1] not in SET_ORIGINS:
            raise self.fail(f"{where} (lv_attr {attr}) cannot be in a group: a group's LVs are "
                            "plain, origin or thin LVs")
        # in a set, a thin origin's snapshot is copy-on-write too (helper.snapshot_set says why)
        self.rec["thin"] = origin.get("segtype") == "thin" and not self.rec.get("in_set")
        if not self.rec["thin"]:        # a thin snapshot takes its room from the pool, later
            self._check_room(origin)
        if self.lvs(self.rec["snapshot"]) is not None:
            raise self.fail(f"{self.rec['vg']}/{self.rec['snapshot']} already exists and is not "
                            "recorded by snaplayers; remove it by hand after checking what it is")

    def _check_room(self, origin):
        """One line, before anything is made, when the VG cannot hold the snapshot at its size."""
        try:
            free, extent, lv_size = (int(origin[k].rstrip("B")) for k in ("vg_free", "vg_extent_size", "lv_size"))
        except (KeyError, ValueError):
            return                      # not reported: lvcreate says it, if so
        need = snapshot_bytes(self.rec["size"], lv_size, extent)
        if need > free:
            raise self.fail(f"volume group {self.rec['vg']} has {mib(free)} free; the snapshot of "
                            f"{self.rec['origin']} at size {self.rec['size']} needs {mib(need)}: "
                            "free space in the VG or lower the size property")

    def _setup(self):
        argv = ["lvcreate", "--snapshot", "--name", self.rec["snapshot"]]
        if self.rec["thin"]:
            argv += ["--setactivationskip", "n"]    # thin snapshots skip activation by default
        elif self.rec["size"].endswith("%ORIGIN"):
            argv += ["--extents", self.rec["size"]]
        else:
            argv += ["--size", self.rec["size"]]
        self.run(*argv, f"{self.rec['vg']}/{self.rec['origin']}")

    def _post_setup(self):
        snap = self.lvs(self.rec["snapshot"])
        if snap is None or snap.get("origin") != self.rec["origin"]:
            raise self.fail(f"{self.rec['device']} is not a snapshot of {self.rec['origin']} "
                            "after lvcreate")
        if snap.get("lv_attr", "")[4:5] != "a" or not self.ctx.host.wait_for(self.rec["device"]):
            raise self.fail(f"snapshot {self.rec['device']} is not active")
        if not self.rec["thin"] and snap.get("lv_size", "").rstrip("B").isdigit():
            # what LVM took from the VG for it: `discover` sums these for capacity
            self.rec["taken_bytes"] = int(snap["lv_size"].rstrip("B"))

    def _live(self):
        return self.lvs(self.rec["snapshot"])

    def _teardown(self, snap):
        # a snapshot always has an origin: a journal naming a plain LV (origin "") is not ours
        if not snap.get("origin") or snap.get("origin") != self.rec["origin"]:
            raise self.fail(f"{self.rec['vg']}/{self.rec['snapshot']} is not a snapshot of "
                            f"{self.rec['origin']}; not removing it")
        self.run("lvremove", "--yes", f"{self.rec['vg']}/{self.rec['snapshot']}")
        self._check(snap)

    def check_left(self):
        self._check(self._live())

    def _check(self, snap):
        where = f"{self.rec['vg']}/{self.rec['snapshot']}"
        if snap is None or snap.get("origin") != self.rec["origin"]:
            raise SnapshotInvalid(f"snapshot {where} of {self.rec['origin']} is gone: what was "
                                  "read from it cannot be checked")
        attr, used = snap.get("lv_attr", ""), snap.get("data_percent", "") or "0"
        if snap.get("segtype") == "thin":
            self._check_thin(snap, where)
            return
        if attr[4:5] == "I" or attr[:1] == "S" or float(used) >= 100.0:
            raise SnapshotInvalid(
                f"snapshot {where} overflowed or was invalidated (lv_attr {attr}, {used}% used): "
                "what was read from it is not a point-in-time copy; raise the size property")

    def _check_thin(self, snap, where):
        """A thin snapshot has no copy-on-write area to overflow: its Data% is its share of the
        pool, 100 when the origin was written whole (its normal state). Its blocks are never
        overwritten, so a pool out of data space leaves it whole; a pool that failed or went
        read-only on full metadata, or lost a PV (lv_attr health F, M, p; X: LVM cannot tell)
        does not."""
        pool_name = snap.get("pool_lv", "")
        pool = self.lvs(pool_name) if pool_name else None
        if pool is None or pool.get("segtype") != "thin-pool":
            raise SnapshotInvalid(f"thin snapshot {where}: its pool {self.rec['vg']}/{pool_name or '?'} "
                                  "is gone or is no thin pool: what was read from it cannot be checked")
        bad = [f"{name} lv_attr {row.get('lv_attr', '')}"
               for name, row in ((where, snap), (f"{self.rec['vg']}/{pool_name}", pool))
               if row.get("lv_attr", "")[8:9] in THIN_FAILED]
        if bad:
            raise SnapshotInvalid(
                f"thin snapshot {where}: {' and '.join(bad)} (health {THIN_HEALTH}): what was "
                "read from it may not be a point-in-time copy; check the pool (lvmthin(7))")
        if pool.get("lv_attr", "")[8:9] == "D":
            log.info("thin pool %s/%s is out of data space: the VM's writes fail, the snapshot "
                     "is whole", self.rec["vg"], pool_name)


def take_set(layers: list[LvSnapshot], checkpoint) -> None:
    """Several origins' snapshots at one instant, in one helper command; each layer's own
    checks before and after, as Layer.setup() does for one."""
    for layer in layers:
        layer.rec["in_set"] = True
        layer._pre_setup()
    for layer in layers:
        layer.rec["state"] = "creating"
    checkpoint()
    suffix = layers[0].ctx.settings.snap_suffix
    if any(layer.rec["snapshot"] != layer.rec["origin"] + suffix for layer in layers):
        raise layers[0].fail("a set's snapshots are named <lv><suffix>")
    res = layers[0].run(SET, "--suffix", suffix, "--size", layers[0].rec["size"],
                        *(f"{layer.rec['vg']}/{layer.rec['origin']}" for layer in layers))
    held = re.search(r"origins held ([0-9.]+) s", res.stdout)
    for layer in layers:
        layer._post_setup()
        layer.rec["state"] = "up"
        if held:
            layer.rec["set_held_seconds"] = float(held.group(1))
    log.info("snapshot-set of %d origins: their I/O held %s s", len(layers),
             held.group(1) if held else "?")


# LVM's size units: powers of 1024 whatever the case; s is a 512-byte sector
UNITS = {"b": 1, "s": 512, **{u: 1024 ** (i + 1) for i, u in enumerate("kmgtpe")}}


def snapshot_bytes(size: str, lv_size: int, extent: int) -> int:
    """What lvcreate takes at least for a snapshot of `size` (the size property), in whole
    extents. A %ORIGIN size took one extent more on the fixture (lvm2 2.03.16: 20% of 80
    extents gave 17, 10% of 108 gave 12): a lower bound, so a check never refuses what fits."""
    if size.endswith("%ORIGIN"):
        need = lv_size * float(size[:-len("%ORIGIN")]) / 100
    else:
        unit = size[-1:].lower() if size[-1:].isalpha() else "m"     # LVM's default unit
        need = float(size.rstrip("bBsSkKmMgGtTpPeE")) * UNITS[unit]
    return -(-int(need) // extent) * extent


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
