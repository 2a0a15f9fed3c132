"""`snaplayers capacity` on the real fixture, as the Amanda user through its helper: what it says
a VG needs for maxdumps snapshots at once is what LVM really takes for them."""

import pytest

pytestmark = pytest.mark.integration


def test_capacity_is_what_lvm_takes_for_the_largest_snapshots_at_once(testbed):
    vg, maxdumps = testbed.topo.vg("storage0"), 4
    variants = testbed.topo.variants
    disklist = "".join(f"storage0 {v.name} {testbed.device(v.name)} snaplayers-amgtar\n" for v in variants)
    testbed.exec("storage0", ["sh", "-c", f"cat > /tmp/tb-disklist <<'EOF'\n{disklist}EOF"])
    rows = [ln.split("|") for ln in testbed.exec("storage0", [
        "lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", "|",
        "-o", "lv_name,lv_size,segtype,vg_free", vg]).split()]
    origins = {v.legs[0].lv for v in variants}
    classic = sorted(((int(size), name) for name, size, seg, _ in rows if name in origins and seg != "thin"),
                     reverse=True)
    thin = sorted(name for name, _, seg, _ in rows if name in origins and seg == "thin")
    free = int(rows[0][3])
    # what LVM takes for the largest snapshots at the default size, made and measured here
    largest = [name for _, name in classic[:maxdumps]]
    try:
        for name in largest:
            testbed.exec("storage0", ["lvcreate", "-q", "-y", "-s", "-l", "20%ORIGIN", "-n", f"tbcap-{name}", f"{vg}/{name}"])
        taken = sum(int(testbed.exec("storage0", ["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                                                  "lv_size", f"{vg}/tbcap-{name}"])) for name in largest)
    finally:
        testbed.exec("storage0", ["sh", "-c", f"lvremove -q -y {' '.join(f'{vg}/tbcap-{n}' for n in largest)}; true"])
    code, out, err = testbed.run("storage0", ["snaplayers", "capacity", "--disklist", "/tmp/tb-disklist",
                                              "--maxdumps", str(maxdumps)], user="backup")
    assert code == 0 and "read in" in err, out + err
    assert out.strip() == (f"VG {vg}: {free / 2**20:.1f} MiB free; {len(classic)} origins at size 20%ORIGIN, "
                           f"the {maxdumps} largest at once need {taken / 2**20:.1f} MiB: ok"
                           + (f"; thin, from their pool: {', '.join(thin)}" if thin else ""))
    # a size of which maxdumps snapshots at once do not fit: exit 1, and by how much
    size = (free // maxdumps // 2**20 // 4 + 1) * 4     # MiB, in whole 4 MiB extents
    code, out, err = testbed.run("storage0", ["snaplayers", "capacity", "--disklist", "/tmp/tb-disklist",
                                              "--maxdumps", str(maxdumps), "--size", f"{size}M"], user="backup")
    assert code == 1 and f"need {maxdumps * size:.1f} MiB: SHORT by {maxdumps * size - free / 2**20:.1f} MiB" in out, out + err
