"""`snaplayers capacity` against the simulated host's LVM: which VG would run out with
maxdumps snapshots at once, from one lvs per origin (DLEs of one LV count once)."""

import io

import pytest

from snaplayers import cli, run
from snaplayers.capacity import devices_of, origins_of, snapshot_bytes, survey, verdict
from simhost import SteeredSystem

MiB, GiB, EXTENT = 2**20, 2**30, 4 * 2**20
DISKLIST = """# a VM host
storage0 vm1-root /v/amsnap/lvm=data0+vm1,part=1 snaplayers-amgtar
storage0 vm1-var  /v/amsnap/lvm=data0+vm1,part=2 snaplayers-amgtar 1
storage0 vm2 /v/amsnap/lvm=data0+vm2 snaplayers-amgtar
storage0 vm3 /v/amsnap/lvm=data1+vm3,raid1,part=1 {
    snaplayers-amgtar
}
storage0 /etc /etc comp-root
"""


@pytest.fixture
def host():
    system = SteeredSystem(permissive=False)     # what is not added does not exist
    for vg, lv, size in (("data0", "vm1", 10 * GiB), ("data0", "vm2", 2 * GiB), ("data1", "vm3", GiB)):
        system.add_lv(vg, lv)
        system.lvs[f"{vg}/{lv}"].update(lv_size=f"{size}B", vg_free=f"{(2 if vg == 'data0' else 1) * GiB}B")
    return system


def test_the_device_fields_of_a_disklist_and_one_origin_per_lv():
    devices = devices_of(DISKLIST)
    assert len(devices) == 4
    assert origins_of(devices) == [("data0", "vm1"), ("data0", "vm2"), ("data1", "vm3")]


@pytest.mark.parametrize("size,lv_size,need", [
    ("20%ORIGIN", 10 * GiB, 2048 * MiB), ("20%ORIGIN", 1000 * MiB, 200 * MiB),
    ("20%ORIGIN", 1001 * MiB, 204 * MiB),     # 200.2 MiB: 51 extents
    ("1.5G", GiB, 1536 * MiB), ("300", GiB, 300 * MiB), ("8193s", GiB, 8 * MiB)])
def test_snapshot_sizes_in_whole_extents(size, lv_size, need):
    assert snapshot_bytes(size, lv_size, EXTENT) == need


@pytest.mark.parametrize("maxdumps,ok", [(1, True), (2, False)])
def test_a_vg_that_cannot_hold_its_largest_snapshots_at_once_is_short(host, maxdumps, ok):
    vgs = survey(host.runner(), origins_of(devices_of(DISKLIST)), "20%ORIGIN", progress=io.StringIO())
    lines, fits = verdict(vgs, maxdumps, "20%ORIGIN")
    assert fits is ok
    # vm1's 2048 MiB fits data0's 2048 MiB free alone; with vm2's 412 MiB beside it, it does not
    assert lines[0] == ("VG data0: 2048.0 MiB free; 2 origins at size 20%ORIGIN, the "
                        + ("1 largest at once need 2048.0 MiB: ok" if ok else
                           "2 largest at once need 2460.0 MiB: SHORT by 412.0 MiB"))
    assert lines[1] == ("VG data1: 1024.0 MiB free; 1 origins at size 20%ORIGIN, the 1 largest at "
                        "once need 208.0 MiB: ok")


def test_thin_and_missing_origins_are_named_not_counted(host):
    host.add_thin_lv("data0", "vm4")
    host.lvs["data0/vm4"].update(vg_free=f"{2 * GiB}B")
    vgs = survey(host.runner(), [("data0", "vm2"), ("data0", "vm4"), ("data0", "nosuch"), ("data9", "x")],
                 "1G", progress=io.StringIO())
    lines, fits = verdict(vgs, 4, "1G")
    assert lines == ["VG data0: 2048.0 MiB free; 1 origins at size 1G, the 1 largest at once need "
                     "1024.0 MiB: ok; thin, from their pool: vm4; no such LV: nosuch",
                     "VG data9: no LV found; no such LV: x"]
    assert not fits


def test_the_command_prints_one_line_per_vg_and_exits_1_when_short(host, tmp_path, capsys, monkeypatch):
    (tmp_path / "disklist").write_text(DISKLIST)
    monkeypatch.setattr(run, "Runner", lambda sudo: host.runner())
    assert cli.main(["capacity", "--disklist", str(tmp_path / "disklist"), "--maxdumps", "2"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith("SHORT by 412.0 MiB") and len(out.splitlines()) == 2
    assert "capacity: [3/3] lvs data1/vm3" in err and "3 origins in 2 VGs read in" in err
    assert cli.main(["capacity", "--device", "/v/amsnap/lvm=data1+vm3", "--maxdumps", "4"]) == 0


@pytest.mark.parametrize("argv,word", [
    (["capacity"], "no snaplayers device field"),
    (["capacity", "--device", "/v/amsnap/lvm=data0+vm1", "--maxdumps", "0"], "--maxdumps 0"),
    (["capacity", "--device", "/v/amsnap/lvm=data0+vm1", "--size", "lots"], "size"),
    (["capacity", "--device", "/v/amsnap/raid1"], "source"),
    (["capacity", "--disklist", "/nonexistent/disklist"], "/nonexistent/disklist"),
])
def test_bad_input_is_one_line_and_runs_nothing(host, capsys, monkeypatch, argv, word):
    runner = host.runner()
    monkeypatch.setattr(run, "Runner", lambda sudo: runner)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and word in err, err
    assert runner.executed == []
