"""`snaplayers discover` on the fixture's storage host, as an admin runs it (root, on that host):
the disklist it prints names exactly the filesystems the topology built, says why it skipped
what holds none, and Amanda dumps from it as printed, restored byte for byte."""

import re

import pytest

from figures import record
from leftovers import nothing_left
from testbed.amanda import CLIENT, SERVER, ok_dumps

pytestmark = pytest.mark.e2e

DISCOVERED = "TBDISCOVERED"
# the DLE Amanda dumps from the discovered disklist: md, GPT and a guest VG, so its disk name
# holds every character discover puts in one ('/', '=', '+')
DUMPED = "md-part-vg-ext4"


def test_discover_prints_the_topologys_disklist_and_amanda_dumps_from_it(amanda):
    tb, topo = amanda.tb, amanda.topo
    vg = topo.vg(CLIENT)
    with tb.steps.step(f"snaplayers discover --vg {vg} on {CLIENT}"):
        code, out, err = tb.run(CLIENT, ["snaplayers", "discover", "--vg", vg, "--host", amanda.client_host,
                                         "--maxdumps", "4"])
    assert code == 0, err
    entries = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    # every filesystem the topology made, each once, and nothing else
    assert sorted(e[2] for e in entries) == sorted(topo.device(v) for v in topo.variants), out
    assert {(e[0], e[3]) for e in entries} == {(amanda.client_host, "snaplayers-amgtar")}, out
    # one loop device holds the VG: one spindle for all, so Amanda dumps them one at a time
    assert {e[4] for e in entries} == {"1"}, out
    skipped = dict(re.findall(r"^# skipped (\S+): (.*)$", out, re.M))
    assert skipped[f"{vg}/tbempty"] == "no filesystem (blkid finds nothing)", out
    assert skipped[f"{vg}/tbswap"] == "swap", out
    assert skipped[f"{vg}/tbpool"].startswith("not an origin volume"), out
    assert set(skipped) == {f"{vg}/{lv}" for lv in ("tbempty", "tbswap", "tbpool")}, out
    # the VG holds the 4 largest snapshots at once, as LVM took them for the probes (the
    # fixture's VG has room for every LV's at once); the thin LV's comes from its pool
    [capacity] = [ln for ln in out.splitlines() if ln.startswith("# capacity")]
    assert capacity.startswith(f"# capacity, maxdumps 4: VG {vg}: "), out
    assert "snapshot(s) at size 20%ORIGIN, the 4 largest at once take" in capacity, out
    assert capacity.endswith(": enough; thin, from their pool: vol06"), out
    free, need = re.search(r": ([\d.]+) MiB free; .* take ([\d.]+) MiB", capacity).groups()
    assert 0 < float(need) <= float(free), capacity
    record("discover: MiB free in storage0's VG", float(free))
    record("discover: MiB the 4 largest probe snapshots took at once", float(need))
    # progress on stderr, one line per LV, and the time it all took
    probed = re.search(r"discover: (\d+) LV\(s\) probed in ([\d.]+) s", err)
    assert probed and int(probed.group(1)) == len({v.legs[0].lv for v in topo.variants}) + 2, err
    record("discover on storage0, s", float(probed.group(2)))
    nothing_left(tb)

    amanda.write_config(DISCOVERED, out)
    disk = next(e[1] for e in entries if e[2] == topo.device(topo.variant(DUMPED)))
    code, seconds = amanda.amdump(DISCOVERED, disks=[disk])
    report = amanda.report(DISCOVERED)
    assert code == 0, report
    assert ok_dumps(amanda.dumps(DISCOVERED)) == {disk: [0]}, report
    dest = "/srv/restore/discovered"
    amanda.fetch(f"={disk}", dest, DISCOVERED)
    expected = tb.python(topo.guest, "guest.py", "read", {"paths": {DUMPED: tb.manifest_path(DUMPED)}})
    seen = tb.python(SERVER, "guest.py", "restored", {"trees": {DUMPED: f"{dest}/tree"}})
    assert seen[DUMPED]["manifest"] == expected[DUMPED]
    nothing_left(tb)
