"""What a testbed is, as data: hosts, volumes, arrays, partitions, filesystems, data sets.

The disklist's device strings are derived from here, so they cannot disagree with what was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

MOUNT_BASE = "/v/amsnap"
WRONG_KEY = "tbwrong"   # a key file on the storage hosts that opens no container


@dataclass(frozen=True)
class Volume:
    host: str           # storage host that holds the LV and exports it
    lv: str
    size_mb: int = 320  # mkfs.xfs wants >= 300 MB; the backing file is sparse
    thin: bool = False  # a thin LV in the host's pool, written whole at creation (Data% 100)


@dataclass(frozen=True)
class Variant:
    """One disklist entry: how the guest lays out a filesystem on the exported LVs."""

    name: str                       # the DLE's disk name
    legs: Tuple[Volume, ...]        # two legs: an md RAID1 in the guest; one: a plain disk
    partition: Optional[int]        # the filesystem's GPT partition, or None for the whole device
    fs: str                         # ext4 | xfs
    files: int = 24                 # data set: files of mixed sizes
    extra_partitions: int = 0       # partitions before the filesystem's (lvm=...,part=2)
    guest_vg: Optional[Tuple[str, str]] = None  # the filesystem is on this VG+LV of the guest's (vg=)
    luks: Optional[str] = None      # the partition is a LUKS2 container opened by this key (luks=)

    @property
    def raid1(self) -> bool:
        return len(self.legs) == 2

    def layers(self, vg_of: Dict[str, str]) -> str:
        src = self.legs[0]
        tokens = [f"lvm={vg_of[src.host]}+{src.lv}"]
        if self.raid1:
            tokens.append("raid1")
        if self.partition:
            tokens.append(f"part={self.partition}")
        if self.luks:
            tokens.append(f"luks={self.luks}")
        if self.guest_vg:
            tokens.append(f"vg={self.guest_vg[0]}+{self.guest_vg[1]}")
        return ",".join(tokens)


@dataclass
class Topology:
    prefix: str                                  # unique per testbed: sltb<id>
    storage_hosts: Tuple[str, ...] = ("storage0", "storage1")
    guest: str = "guest0"
    variants: List[Variant] = field(default_factory=list)
    # LVs of the first storage host that hold no filesystem, never exported: LV -> what is on
    # it ("" nothing, "swap" a swap area); discover must report each as skipped
    plain: Dict[str, str] = field(default_factory=dict)

    def vg(self, host: str) -> str:
        return f"{self.prefix}_data{host[-1]}"

    @property
    def vg_of(self) -> Dict[str, str]:
        return {h: self.vg(h) for h in self.storage_hosts}

    def iqn(self, host: str) -> str:
        return f"iqn.2026-11.io.snaplayers:{self.prefix}-{host}"

    def container(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def network(self) -> str:
        return f"{self.prefix}-net"

    def volumes(self, host: str) -> List[Volume]:
        seen = {}
        for v in self.variants:
            for leg in v.legs:
                if leg.host == host:
                    seen[leg.lv] = leg
        return list(seen.values())

    def device(self, variant: Variant) -> str:
        return f"{MOUNT_BASE}/{variant.layers(self.vg_of)}"

    def clash_vgs(self, host: str) -> List[Tuple[str, str]]:
        """VG+LV names a guest uses that the storage host holding its leg has too (inactive)."""
        return sorted({v.guest_vg for v in self.variants if v.guest_vg and v.legs[0].host == host})

    def keys(self) -> List[str]:
        return sorted({v.luks for v in self.variants if v.luks})

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def default(prefix: str, names: Optional[List[str]] = None) -> Topology:
    """The production layout and its variants; `names` picks some of them."""
    s0, s1 = "storage0", "storage1"
    variants = [
        # md RAID1 with one leg from each storage host, GPT, ext4 on partition 1
        Variant("md-part-ext4", (Volume(s0, "vol00"), Volume(s1, "vol00")), 1, "ext4"),
        # an xfs with a dirty log on the whole md array: lost files if the log is not replayed
        Variant("md-xfs", (Volume(s0, "vol03"), Volume(s1, "vol03")), None, "xfs"),
        # an LV with a partition table and no md: lvm=...,part=2
        Variant("part-xfs", (Volume(s0, "vol01", 432),), 2, "xfs", extra_partitions=1),
        # a filesystem straight on the LV: lvm=...
        Variant("lv-ext4", (Volume(s0, "vol02"),), None, "ext4"),
        # the guest's own LVM on partition 1 of the md: vg=. storage0 has a VG of the same
        # name with an LV of the same name (inactive: one /dev is shared by every node here, and
        # vgcreate refuses a name whose /dev/<vg> exists), as Debian's installer names them alike
        Variant("md-part-vg-ext4", (Volume(s0, "vol04"), Volume(s1, "vol04")), 1, "ext4",
                guest_vg=(f"{prefix}_vm", "root")),
        # a LUKS2 container on partition 1 of the md, ext4 inside: luks=
        Variant("md-part-luks-ext4", (Volume(s0, "vol05"), Volume(s1, "vol05")), 1, "ext4",
                luks="tbkey"),
        # a second filesystem on each of two VM disks above, a DLE of its own: the DLEs of one
        # disk share its snapshot (and the md array's one assembled leg) while both are up
        Variant("md-part2-ext4", (Volume(s0, "vol00"), Volume(s1, "vol00")), 2, "ext4", files=12),
        Variant("part1-ext4", (Volume(s0, "vol01", 432),), 1, "ext4", files=12),
        # a thin LV whose every block was written once (a VM disk copied in): Data% 100 is its
        # normal state, and its snapshot's
        Variant("thin-ext4", (Volume(s0, "vol06", 96, thin=True),), None, "ext4", files=8),
    ]
    if names:
        variants = [v for v in variants if v.name in names]
    return Topology(prefix=prefix, variants=variants, plain={"tbempty": "", "tbswap": "swap"})


def scaling(prefix: str, n: int = 8) -> Topology:
    """n DLEs of the production layout on storage0 (md RAID1 with a leg on each host, GPT,
    ext4 on partition 1): what the scaling benchmark dumps 1, 4 and n of."""
    s0, s1 = "storage0", "storage1"
    variants = [Variant(f"dle{i}", (Volume(s0, f"vol{i:02d}", 96), Volume(s1, f"vol{i:02d}", 96)), 1, "ext4")
                for i in range(n)]
    return Topology(prefix=prefix, variants=variants)
