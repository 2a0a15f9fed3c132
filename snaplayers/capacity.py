"""The room a snapshot takes in its VG, as lvcreate counts it."""

from __future__ import annotations

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
