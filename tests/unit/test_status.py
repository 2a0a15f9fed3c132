"""`snaplayers status`: the plain lines operators and the testbed read, and `--json` for programs."""

import json
import os
import types

import pytest

from snaplayers import cli, layers, run
from snaplayers.stack import dle_id

from conftest import node

BASE = "/v/amsnap"
MD = "lvm=data0+vol00,raid1,part=1"
VG = "lvm=data0+vol05,part=2,vg=vg0+root,luks=k"


@pytest.fixture
def recorded(world, spec, monkeypatch):
    """Stacks set up on the simulated host; status reads them as on the real one."""
    monkeypatch.setattr(layers, "Host", lambda: world.system)
    def runner(sudo="auto", debug=False, policy=None):
        world.runner.policy = policy            # what the operator commands give a real one
        return world.runner
    monkeypatch.setattr(run, "Runner", runner)
    for disk, layers_ in (("vol00", MD), ("vol05", VG)):
        stack = world.stack(disk)
        stack.setup(spec(layers_))
        data = stack.journal.load()
        stack.journal.write({**data, "started": 1000.0})
    monkeypatch.setattr(cli, "time", types.SimpleNamespace(time=lambda: 1042.4))
    return world


def gone(system, mountpoint):
    """Unmounted and its directory removed behind the journal's back."""
    system.mount_rows = [m for m in system.mount_rows if m["mountpoint"] != mountpoint]
    system.dirs.discard(mountpoint)


def status(capsys, state_dir, *extra):
    assert cli.main(["status", "--state-dir", str(state_dir), *extra]) == 0
    return capsys.readouterr().out


def test_plain_status_lines(recorded, capsys):
    a, b = dle_id("TB", "storage0", "vol00"), dle_id("TB", "storage0", "vol05")
    part, part2 = node("lvm=data0+vol00,raid1,part=1"), node("lvm=data0+vol05,part=2")
    vg, crypt = node("lvm=data0+vol05,part=2,vg=vg0+root"), node(VG)
    recorded.system.processes.pop(4242)         # the Amanda run is gone: a leftover
    gone(recorded.system, f"{BASE}/{VG}")
    lines = status(capsys, recorded.state_dir).splitlines()
    pid = os.getpid()
    by_id = {a: [
        f"TB storage0 vol00: up, set up 42 s ago by pid {pid}, device {BASE}/{MD}; Amanda process 4242 "
        "is gone: a leftover",
        f"  {'lvm=data0+vol00':<24} {'/dev/mapper/data0-vol00.amsnap':<48} present",
        f"  {'raid1':<24} {'/dev/md127':<48} present",
        f"  {'part=1':<24} {f'/dev/mapper/snaplayers-{part}-2p1':<48} present",
        f"  {'mount':<24} {'mount':<48} present"],
        b: [
        f"TB storage0 vol05: up, set up 42 s ago by pid {pid}, device {BASE}/{VG}; Amanda process 4242 "
        "is gone: a leftover",
        f"  {'lvm=data0+vol05':<24} {'/dev/mapper/data0-vol05.amsnap':<48} present",
        f"  {'part=2':<24} {f'/dev/mapper/snaplayers-{part2}-1p2':<48} present",
        f"  {'vg=vg0+root':<24} {f'/dev/mapper/snaplayers_{vg}-root':<48} present",
        f"  {'luks=k':<24} {f'/dev/mapper/snaplayers-{crypt}-3c':<48} present",
        f"  {'mount':<24} {'mount':<48} gone"]}
    assert lines == [line for ident in sorted(by_id) for line in by_id[ident]]


def test_json_names_the_forms_of_every_kernel_object_name(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "HELPERS", (str(tmp_path / "no-helper"),))
    out = json.loads(status(capsys, tmp_path, "--json"))
    assert out["stacks"] == [] and out["helper"] is None       # no helper installed here
    assert out["names"] == {"dm_prefix": "snaplayers-", "guest_vg_prefix": "snaplayers_",
                            "md_prefix": "snaplayers-", "md_link_prefix": "/dev/md/snaplayers-",
                            "snapshot_suffix": ".amsnap", "mount_base": None,
                            "discover_suffix": ".amdisc", "discover_state_dir": "/var/lib/snaplayers/discover"}


def test_json_takes_the_suffix_and_mount_base_from_the_installed_helper(tmp_path, capsys, monkeypatch):
    from snaplayers import privilege
    helper = tmp_path / "helper"
    helper.write_text(privilege.helper_source(privilege.compile_policy("/srv/snaps", ".bk")))
    monkeypatch.setattr(run, "HELPERS", (str(helper),))
    out = json.loads(status(capsys, tmp_path / "state", "--json"))
    assert out["names"]["snapshot_suffix"] == ".bk" and out["names"]["mount_base"] == "/srv/snaps"
    assert out["helper"] == str(helper)


def test_json_lists_each_stack_with_the_names_of_what_it_holds(recorded, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(run, "HELPERS", (str(tmp_path / "no-helper"),))
    a, b = dle_id("TB", "storage0", "vol00"), dle_id("TB", "storage0", "vol05")
    md_id, part = node("lvm=data0+vol00,raid1"), node("lvm=data0+vol00,raid1,part=1")
    vg, crypt = node("lvm=data0+vol05,part=2,vg=vg0+root"), node(VG)
    gone(recorded.system, f"{BASE}/{VG}")
    out = json.loads(status(capsys, recorded.state_dir, "--json"))
    assert out["names"]["mount_base"] is None           # no helper: not known
    stacks = {s["dle_id"]: s for s in out["stacks"]}
    assert set(stacks) == {a, b}
    md = stacks[a]
    assert {k: md[k] for k in ("config", "host", "disk", "device", "state", "pid")} == {
        "config": "TB", "host": "storage0", "disk": "vol00", "device": f"{BASE}/{MD}",
        "state": "up", "pid": os.getpid()}
    assert md["owner"] == {"pid": 4242, "alive": True}
    assert md["layers"] == [
        {"token": "lvm=data0+vol00", "present": True, "shared_with": [],
         "names": {"lv": "data0/vol00.amsnap", "dm": "data0-vol00.amsnap",
                   "device": "/dev/mapper/data0-vol00.amsnap"}},
        {"token": "raid1", "present": True, "shared_with": [],
         "names": {"md_link": f"/dev/md/snaplayers-{md_id}", "md_name": f"snaplayers-{md_id}",
                   "device": "/dev/md127"}},
        {"token": "part=1", "present": True, "shared_with": [],
         "names": {"dm": f"snaplayers-{part}-2p1", "device": f"/dev/mapper/snaplayers-{part}-2p1"}},
        {"token": "mount", "present": True, "shared_with": [],
         "names": {"mountpoint": f"{BASE}/{MD}"}}]
    vg_layers = stacks[b]["layers"]
    assert vg_layers[2] == {"token": "vg=vg0+root", "present": True, "shared_with": [],
                            "names": {"vg": f"snaplayers_{vg}", "lv": f"snaplayers_{vg}/root",
                                      "dm": f"snaplayers_{vg}-root",
                                      "device": f"/dev/mapper/snaplayers_{vg}-root"}}
    assert vg_layers[3]["names"] == {"dm": f"snaplayers-{crypt}-3c",
                                     "device": f"/dev/mapper/snaplayers-{crypt}-3c"}
    assert vg_layers[4] == {"token": "mount", "present": False, "shared_with": [],
                            "names": {"mountpoint": f"{BASE}/{VG}"}}


def test_json_says_an_unreadable_journal(tmp_path, capsys):
    (tmp_path / "0123456789ab.json").write_text("{")
    out = json.loads(status(capsys, tmp_path, "--json"))
    assert out["stacks"] == [{"dle_id": "0123456789ab", "state": "unreadable"}]


def test_plain_status_with_nothing_recorded_is_one_line(tmp_path, capsys):
    assert status(capsys, tmp_path) == "no stacks recorded\n"



def forge(world, disk, layer):
    """What the Amanda user can write into its own state dir: its journal with one layer."""
    stack = world.stack(disk)
    data = stack.journal.load()
    stack.journal.write({**data, "layers": [layer]})
    return data


def test_root_acts_on_a_forged_journal_only_within_the_installed_helpers_policy(
        recorded, capsys, monkeypatch):
    """A mount of the host's own, named in a journal as if it were the stack's: root's cleanup
    would unmount it; the helper's policy (only under the mount base) refuses."""
    from snaplayers import privilege
    data = forge(recorded, "vol00", {**load_layer(recorded, "vol00", "mount"),
                                      "mountpoint": "/srv/vm-images", "source_rdev": "8:3"})
    recorded.system.mount_rows.append({"majmin": "8:3", "mountpoint": "/srv/vm-images",
                                       "options": "rw", "fstype": "xfs", "source": "/dev/sda3"})
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(privilege, "installed_policy", lambda path: privilege.compile_policy(BASE))
    code = cli.main(["cleanup", "--state-dir", recorded.state_dir, "--disk", "vol00"])
    out = capsys.readouterr().out
    assert code == 1 and recorded.runner.policy is not None
    assert f"FAILED: vol00:" in out and "refused" in out and "umount" in out, out
    assert "/srv/vm-images" in [m["mountpoint"] for m in recorded.system.mount_rows]
    assert data["layers"][-1]["mountpoint"] != "/srv/vm-images"     # the forgery mattered


def test_without_an_installed_helper_root_acts_as_before(recorded, capsys, monkeypatch):
    from snaplayers import privilege
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(privilege, "installed_policy", lambda path: None)
    assert cli.main(["cleanup", "--state-dir", recorded.state_dir, "--disk", "vol00"]) == 0
    assert recorded.runner.policy is None
    assert "data0/vol00.amsnap" not in recorded.system.lvs


def test_a_forged_snapshot_record_naming_a_plain_lv_is_not_removed(recorded, capsys):
    """Even trusted (`--sudo no`): lvs reports an empty origin for a plain LV, which a forged
    record can copy; a snapshot always has one."""
    forge(recorded, "vol00", {**load_layer(recorded, "vol00", "lvm"), "snapshot": "vol00",
                              "origin": ""})
    assert cli.main(["cleanup", "--state-dir", recorded.state_dir, "--disk", "vol00",
                     "--sudo", "no"]) == 1
    assert "not a snapshot" in capsys.readouterr().out
    assert "data0/vol00" in recorded.system.lvs


def load_layer(world, disk, kind):
    return next(r for r in world.stack(disk).journal.load()["layers"] if r["kind"] == kind)


def test_root_refuses_to_clean_up_in_a_state_dir_another_user_can_write(recorded, capsys, monkeypatch):
    """Root would write journals and locks there, through whatever symlinks that user planted."""
    os.chown(recorded.state_dir, 65534, 65534)
    before = sorted(os.listdir(recorded.state_dir))
    executed = len(recorded.runner.executed)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    assert cli.main(["cleanup", "--state-dir", recorded.state_dir]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not root's alone" in err and "sudo -u" in err, err
    assert len(recorded.runner.executed) == executed
    assert sorted(os.listdir(recorded.state_dir)) == before


def test_cleanup_leaves_a_stack_whose_amanda_process_runs_unless_forced(recorded, capsys, monkeypatch):
    recorded.system.processes[5151] = "888"
    monkeypatch.setattr(recorded.system, "caller", lambda: {"pid": 5151, "start": "888"})
    assert cli.main(["cleanup", "--state-dir", recorded.state_dir, "--disk", "vol00"]) == 0
    out = capsys.readouterr().out
    assert "in use: vol00: its Amanda process 4242 still runs" in out and "1 in use" in out, out
    assert "data0/vol00.amsnap" in recorded.system.lvs
    assert cli.main(["cleanup", "--state-dir", recorded.state_dir, "--disk", "vol00", "--force"]) == 0
    assert "torn down: vol00" in capsys.readouterr().out
    assert "data0/vol00.amsnap" not in recorded.system.lvs


def test_a_journal_naming_another_place_is_that_journals_failure_alone(recorded, capsys):
    stack = recorded.stack("vol00")
    data = stack.journal.load()
    stack.journal.write({**data, "dle_id": "../../etc/x"})
    assert cli.main(["cleanup", "--state-dir", recorded.state_dir]) == 1
    out = capsys.readouterr().out
    assert "is not snaplayers'" in out and "torn down: vol05" in out, out
    assert cli.main(["status", "--state-dir", recorded.state_dir]) == 0
    assert "unreadable journal" in capsys.readouterr().out
