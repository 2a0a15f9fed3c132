"""`snaplayers capacity`: would each VG hold the snapshots of `maxdumps` DLEs at once?

Amanda dumps up to maxdumps DLEs of one client at once, each from a snapshot of its own LV
(DLEs of one LV share one). The worst case for a VG is its largest snapshots all at once."""

from __future__ import annotations

import sys
import time

from .errors import BadInput

# LVM's size units: powers of 1024 whatever the case; s is a 512-byte sector
UNITS = {"b": 1, "s": 512, **{u: 1024 ** (i + 1) for i, u in enumerate("kmgtpe")}}


def snapshot_bytes(size: str, lv_size: int, extent: int) -> int:
    """What lvcreate takes for a snapshot of `size` (the size property), in whole extents."""
    if size.endswith("%ORIGIN"):
        need = lv_size * float(size[:-len("%ORIGIN")]) / 100
    else:
        unit = size[-1:].lower() if size[-1:].isalpha() else "m"     # LVM's default unit
        need = float(size.rstrip("bBsSkKmMgGtTpPeE")) * UNITS[unit]
    return -(-int(need) // extent) * extent


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def devices_of(disklist: str) -> list[str]:
    """The device fields of a disklist that name a snaplayers stack (`<base>/lvm=...`)."""
    found = []
    for line in disklist.splitlines():
        if line.lstrip().startswith("#"):
            continue
        found += [t for t in line.split() if t.startswith("/") and "/lvm=" in t]
    return found


def origins_of(devices: list[str]) -> list[tuple[str, str]]:
    from .device import parse
    seen = []
    for device in devices:
        source = parse(device).source
        if (source.vg, source.lv) not in seen:       # DLEs of one LV share its snapshot
            seen.append((source.vg, source.lv))
    return seen


def survey(runner, origins, size: str, progress=None) -> dict:
    """VG -> {free, needs: [(lv, bytes)], thin: [lv], missing: [lv]}, from one lvs per origin."""
    from .layers import parse_nameprefixes
    from .layers.lvm import FIELDS
    progress = progress or sys.stderr
    vgs: dict[str, dict] = {}
    start = time.monotonic()
    for i, (vg, lv) in enumerate(origins, 1):
        progress.write(f"capacity: [{i}/{len(origins)}] lvs {vg}/{lv}\n")
        res = runner.run(["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o", FIELDS,
                          f"{vg}/{lv}"], accept=(0, 5))
        rows = parse_nameprefixes(res.stdout) if res.returncode == 0 else []
        v = vgs.setdefault(vg, {"free": None, "needs": [], "thin": [], "missing": []})
        if not rows:
            v["missing"].append(lv)
            continue
        row = rows[0]
        v["free"] = int(row["vg_free"].rstrip("B"))
        if row.get("segtype") == "thin":
            v["thin"].append(lv)
        else:
            v["needs"].append((lv, snapshot_bytes(size, int(row["lv_size"].rstrip("B")),
                                                  int(row["vg_extent_size"].rstrip("B")))))
    progress.write(f"capacity: {len(origins)} origins in {len(vgs)} VGs read in "
                   f"{time.monotonic() - start:.1f} s\n")
    return vgs


def verdict(vgs: dict, maxdumps: int, size: str) -> tuple[list[str], bool]:
    """One line per VG, and whether every VG holds its `maxdumps` largest snapshots at once."""
    if maxdumps < 1:
        raise BadInput(f"--maxdumps {maxdumps}: at least 1")
    lines, ok = [], True
    for vg, v in sorted(vgs.items()):
        largest = sorted((n for _, n in v["needs"]), reverse=True)[:maxdumps]
        need = sum(largest)
        notes = [f"thin, from their pool: {', '.join(v['thin'])}"] if v["thin"] else []
        notes += [f"no such LV: {', '.join(v['missing'])}"] if v["missing"] else []
        if v["free"] is None:
            lines.append(f"VG {vg}: no LV found; " + "; ".join(notes))
            ok = False
            continue
        short = need - v["free"]
        ok = ok and short <= 0
        lines.append(f"VG {vg}: {mib(v['free'])} free; {len(v['needs'])} origins at size {size}, "
                     f"the {len(largest)} largest at once need {mib(need)}: "
                     + (f"SHORT by {mib(short)}" if short > 0 else "ok")
                     + "".join(f"; {n}" for n in notes))
    return lines, ok
