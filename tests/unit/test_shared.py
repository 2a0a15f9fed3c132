"""DLEs that read through the same layers share them: one snapshot (and one assembled leg) for
several DLEs of one VM disk, in any order of set-up and tear-down, with killed users reaped."""

import json
import os

import pytest

from snaplayers import cli, discover, layers, run  # noqa: F401  discover: defined before a test patches run.Runner
from snaplayers.errors import Busy, CommandFailed, SnapshotInvalid
from snaplayers.journal import dle_lock
from snaplayers.stack import dle_id, instant

from conftest import BASE
from test_stack import EMPTY

PART1, PART2 = "lvm=data0+vm1,part=1", "lvm=data0+vm1,part=2"
MD1, MD2 = "lvm=data0+vm1,raid1,part=1", "lvm=data0+vm1,raid1,part=2"


def run_as(world, pid):
    """The next calls come from Amanda process `pid` (a sendbackup of its own per dump)."""
    world.system.processes[pid] = str(pid * 10)
    world.system.caller = lambda: {"pid": pid, "start": str(pid * 10)}


def count(world, *prefix):
    return sum(1 for argv in world.commands() if argv[:len(prefix)] == list(prefix))


def up(world, disk, layers_, spec, pid):
    run_as(world, pid)
    return world.stack(disk).setup(spec(layers_))


def down(world, disk, pid):
    run_as(world, pid)
    return world.stack(disk).teardown()


@pytest.mark.parametrize("first_down", ["a", "b"])
def test_two_partitions_of_one_lv_share_one_snapshot(world, spec, first_down):
    assert up(world, "a", PART1, spec, 101) == f"{BASE}/{PART1}"
    assert up(world, "b", PART2, spec, 102) == f"{BASE}/{PART2}"
    assert count(world, "lvcreate") == 1
    objs = world.kernel_objects()
    assert objs["lvs"] == ["data0/vm1.amsnap"] and len(objs["mounts"]) == 2
    second = "b" if first_down == "a" else "a"
    assert down(world, first_down, 101 if first_down == "a" else 102) is True
    objs = world.kernel_objects()
    assert objs["lvs"] == ["data0/vm1.amsnap"], "the snapshot went with its first user"
    assert [m["mountpoint"] for m in objs["mounts"]] == [f"{BASE}/{PART1 if second == 'a' else PART2}"]
    assert count(world, "lvremove") == 0
    assert down(world, second, 101 if second == "a" else 102) is True
    assert world.kernel_objects() == EMPTY and count(world, "lvremove") == 1


def test_two_partitions_of_one_md_array_share_the_snapshot_and_the_assembled_leg(world, spec):
    up(world, "a", MD1, spec, 101)
    up(world, "b", MD2, spec, 102)
    assert count(world, "lvcreate") == 1 and count(world, "mdadm", "--assemble") == 1
    assert len(world.kernel_objects()["arrays"]) == 1 and len(world.kernel_objects()["mounts"]) == 2
    down(world, "a", 101)
    assert len(world.kernel_objects()["arrays"]) == 1 and count(world, "mdadm", "--stop") == 0
    down(world, "b", 102)
    assert world.kernel_objects() == EMPTY


def test_the_same_device_in_two_dles_shares_even_the_mount(world, spec):
    """Two configs (or one big filesystem split by include lists) backing up one device."""
    assert up(world, "a", PART1, spec, 101) == up(world, "b", PART1, spec, 102)
    assert count(world, "mount") == 1 and count(world, "dmsetup", "create") == 1
    down(world, "b", 102)
    assert len(world.kernel_objects()["mounts"]) == 1
    down(world, "a", 101)
    assert world.kernel_objects() == EMPTY


def test_a_dle_that_shares_a_snapshot_reads_the_instant_it_was_taken(world, spec):
    """`started` dates the dump's listed-incremental files: it must be the snapshot's."""
    up(world, "a", PART1, spec, 101)
    first = world.stack("a").journal.load()
    up(world, "b", PART2, spec, 102)
    second = world.stack("b").journal.load()
    assert instant(second) == instant(first) == first["started"] and second["owner"]["pid"] == 102
    assert second["started"] > first["started"]     # its own stack's age is its own
    assert second["layers"][0] == first["layers"][0]        # the same snapshot, as recorded
    assert second["layers"][1]["mapping"] != first["layers"][1]["mapping"]


def overflow(world):
    world.system.lvs["data0/vm1.amsnap"]["lv_attr"] = "swi-I-s---"


def unmount(world):
    world.system.mount_rows.clear()     # dmeventd unmounted it


@pytest.mark.parametrize("second,fault,message", [(PART2, overflow, "overflowed"),
                                                  (PART1, unmount, "no longer mounted")])
def test_a_shared_layer_gone_bad_fails_every_dump_that_read_through_it(world, spec, second, fault,
                                                                       message):
    """The first DLE to tear down leaves the snapshot (or the shared mount) to the other, but
    read through it too: both dumps fail, and the last tear-down removes everything."""
    up(world, "a", PART1, spec, 101)
    up(world, "b", second, spec, 102)
    fault(world)
    with pytest.raises(SnapshotInvalid, match=message):
        down(world, "a", 101)
    assert world.kernel_objects()["lvs"] == ["data0/vm1.amsnap"]
    with pytest.raises(SnapshotInvalid, match=message):
        down(world, "b", 102)
    assert world.kernel_objects() == EMPTY


def test_a_killed_dump_never_takes_the_shared_snapshot_from_a_live_one(world, spec):
    up(world, "a", PART1, spec, 101)
    up(world, "b", PART2, spec, 102)
    world.system.processes.pop(101)     # a's sendbackup was killed: its POST never comes
    assert down(world, "b", 102) is True                    # b's dump is good...
    assert world.kernel_objects() == EMPTY                  # ...and a's leftovers went first
    assert not [f for f in os.listdir(world.state_dir) if f.endswith(".json")]


def test_a_set_up_after_a_killed_dump_reaps_it_and_takes_a_fresh_snapshot(world, spec):
    up(world, "a", PART1, spec, 101)
    world.system.processes.pop(101)
    up(world, "b", PART2, spec, 102)
    assert count(world, "lvcreate") == 2 and count(world, "lvremove") == 1
    objs = world.kernel_objects()
    assert [m["mountpoint"] for m in objs["mounts"]] == [f"{BASE}/{PART2}"]
    assert world.stack("b").journal.load()["owner"]["pid"] == 102
    assert world.stack("a").journal.load() is None
    down(world, "b", 102)
    assert world.kernel_objects() == EMPTY


def test_a_set_up_killed_half_way_is_reaped_by_the_other_dles_tear_down(world, spec):
    up(world, "a", PART1, spec, 101)
    run_as(world, 102)
    stack = world.stack("b")

    class Killed(BaseException):
        pass

    def inject(argv):
        if argv[0] == "dmsetup" and argv[1] == "create":
            world.system.inject = None
            world.system.answer(argv)       # b's mapping exists, then its snaplayers dies
            raise Killed()
    world.system.inject = inject
    stack._teardown = lambda *args, **kwargs: None      # SIGKILL: no unwinding at all
    with pytest.raises(Killed):
        stack.setup(spec(PART2))
    assert stack.journal.load()["state"] == "setting-up"
    assert len(world.kernel_objects()["mappings"]) == 2
    down(world, "a", 101)           # b's sendbackup still runs, but b's set-up never finished
    assert world.kernel_objects() == EMPTY
    assert world.stack("b").journal.load() is None


def test_a_failed_set_up_on_a_shared_snapshot_unwinds_only_its_own_layers(world, spec):
    up(world, "a", PART1, spec, 101)
    before = world.kernel_objects()
    world.system.inject = lambda argv: (1, "") if argv[:2] == ["dmsetup", "create"] else None
    with pytest.raises(CommandFailed):
        up(world, "b", PART2, spec, 102)
    world.system.inject = None
    assert world.kernel_objects() == before and world.stack("b").journal.load() is None
    down(world, "a", 101)
    assert world.kernel_objects() == EMPTY


@pytest.mark.parametrize("other", [{"size": "1G"}, {"recovery": False}])
def test_a_dle_with_other_snapshot_settings_is_refused_before_any_command(tmp_path, spec, other):
    from conftest import World
    world = World(tmp_path)
    up(world, "a", PART1, spec, 101)
    n = len(world.runner.executed)
    differs = World(tmp_path, **other)
    differs.system, differs.runner = world.system, world.runner
    run_as(differs, 102)
    with pytest.raises(Busy, match=f"lvm=data0\\+vm1: DLE 'a' .*set up with another {next(iter(other))}"):
        differs.stack("b").setup(spec(PART2))
    assert len(world.runner.executed) == n and differs.stack("b").journal.load() is None


def test_a_snapshot_older_than_stale_seconds_is_not_shared(world, spec):
    up(world, "a", PART1, spec, 101)
    journal = world.stack("a").journal
    data = journal.load()
    data["layers"][0]["taken"] = data["started"] = data["started"] - 2 * 86400
    journal.write(data)
    with pytest.raises(Busy, match="longer than stale-seconds"):
        up(world, "b", PART2, spec, 102)


def test_status_names_every_user_of_a_shared_layer(world, spec, capsys, monkeypatch):
    monkeypatch.setattr(layers, "Host", lambda: world.system)
    monkeypatch.setattr(run, "Runner", lambda *a, **k: world.runner)
    monkeypatch.setattr(run, "HELPERS", ("/nonexistent",))
    up(world, "a", PART1, spec, 101)
    up(world, "b", PART2, spec, 102)
    assert cli.main(["status", "--state-dir", world.state_dir, "--json"]) == 0
    stacks = {s["disk"]: s for s in json.loads(capsys.readouterr().out)["stacks"]}
    assert [layer["shared_with"] for layer in stacks["a"]["layers"]] == [["b"], [], []]
    assert [layer["shared_with"] for layer in stacks["b"]["layers"]] == [["a"], [], []]


def test_cleanup_of_one_dle_leaves_what_another_holds(world, spec, capsys, monkeypatch):
    monkeypatch.setattr(layers, "Host", lambda: world.system)
    monkeypatch.setattr(run, "Runner", lambda *a, **k: world.runner)
    up(world, "a", PART1, spec, 101)
    up(world, "b", PART2, spec, 102)
    assert cli.main(["cleanup", "--state-dir", world.state_dir, "--disk", "a", "--force"]) == 0
    objs = world.kernel_objects()
    assert objs["lvs"] == ["data0/vm1.amsnap"] and [m["mountpoint"] for m in objs["mounts"]] == [f"{BASE}/{PART2}"]
    assert cli.main(["cleanup", "--state-dir", world.state_dir, "--force"]) == 0
    assert world.kernel_objects() == EMPTY


def test_two_lvs_of_one_guest_vg_in_two_dles_are_refused_in_one_line(world, spec):
    from snaplayers.errors import LayerError
    up(world, "a", "lvm=data0+vm1,part=2,vg=vg0+root", spec, 101)
    before = world.kernel_objects()
    with pytest.raises(LayerError, match=r"vg=vg0\+swap: the guest's volume group on .* is imported "
                                         r"as snaplayers_[0-9a-f]{12} for another DLE"):
        up(world, "b", "lvm=data0+vm1,part=2,vg=vg0+swap", spec, 102)
    assert world.kernel_objects() == before
    down(world, "a", 101)
    assert world.kernel_objects() == EMPTY


def test_a_joiner_dates_its_incrementals_from_the_snapshot_even_second_hand(world, spec):
    up(world, "a", PART1, spec, 101)
    taken = instant(world.stack("a").journal.load())
    up(world, "b", PART2, spec, 102)
    down(world, "a", 101)
    up(world, "c", "lvm=data0+vm1,part=3", spec, 103)       # joins through b's journal only
    assert instant(world.stack("c").journal.load()) == taken


def test_two_killed_users_of_one_snapshot_are_both_reaped_and_it_goes(world, spec):
    up(world, "a", PART1, spec, 101)
    up(world, "b", PART2, spec, 102)
    world.system.processes.pop(101)
    world.system.processes.pop(102)
    up(world, "c", "lvm=data0+vm1,part=3", spec, 103)       # a fresh snapshot, not theirs
    assert count(world, "lvremove") == 1 and count(world, "lvcreate") == 2
    down(world, "c", 103)
    assert world.kernel_objects() == EMPTY


def test_a_leftover_whose_next_set_up_waits_for_the_lock_is_still_reaped(world, spec):
    """After a killed run, b's new PRE holds b's DLE lock while it queues for the origin lock:
    a's set-up must not take b's leftover for a set-up under way."""
    up(world, "b", PART2, spec, 102)
    world.system.processes.pop(102)
    with dle_lock(world.state_dir, dle_id("TB", "storage0", "b"), "b"):
        assert up(world, "a", PART1, spec, 201) == f"{BASE}/{PART1}"
    assert [m["mountpoint"] for m in world.kernel_objects()["mounts"]] == [f"{BASE}/{PART1}"]
    down(world, "a", 201)
    assert world.kernel_objects() == EMPTY


def test_a_joiner_is_not_stale_because_the_snapshot_it_joined_is_old(world, spec, monkeypatch):
    """b joins a snapshot taken near stale-seconds ago; a minute later amcheck's PRE for b
    (during amdump) must be refused busy, not tear b's stack down under its running dump."""
    from snaplayers import stack as stack_mod
    up(world, "a", PART1, spec, 101)
    journal = world.stack("a").journal
    data = journal.load()
    data["layers"][0]["taken"] = data["started"] = data["started"] - 43200 + 30
    journal.write(data)
    up(world, "b", PART2, spec, 102)
    real = stack_mod.time.time
    monkeypatch.setattr(stack_mod.time, "time", lambda: real() + 60)
    with pytest.raises(Busy, match="stale-seconds"):
        up(world, "b", PART2, spec, 300)
    assert f"{BASE}/{PART2}" in [m["mountpoint"] for m in world.kernel_objects()["mounts"]]
    assert down(world, "b", 102) is True


def test_cleanup_says_a_leftover_reaped_with_another_was_torn_down(world, spec, capsys, monkeypatch):
    monkeypatch.setattr(layers, "Host", lambda: world.system)
    monkeypatch.setattr(run, "Runner", lambda *a, **k: world.runner)
    up(world, "a", PART1, spec, 101)
    up(world, "b", PART2, spec, 102)
    world.system.processes.pop(101)
    world.system.processes.pop(102)
    assert cli.main(["cleanup", "--state-dir", world.state_dir]) == 0
    out = capsys.readouterr().out
    assert world.kernel_objects() == EMPTY
    assert "in use" not in out and out.splitlines()[-1] == "cleanup: 2 torn down, 0 failed", out


@pytest.mark.parametrize("fault,why", [(unmount, "no longer mounted"), (overflow, "overflowed")])
def test_cleanup_tears_down_a_leftover_gone_bad_and_says_so_without_failing(world, spec, capsys,
                                                                             monkeypatch, fault, why):
    """A storage host's restart takes a leftover's mount with it (measured on the testbed):
    the admin's cleanup removes all the rest, names what was wrong, and has not failed."""
    monkeypatch.setattr(layers, "Host", lambda: world.system)
    monkeypatch.setattr(run, "Runner", lambda *a, **k: world.runner)
    up(world, "a", PART1, spec, 101)
    world.system.processes.pop(101)
    fault(world)
    assert cli.main(["cleanup", "--state-dir", world.state_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert world.kernel_objects() == EMPTY
    assert out[0].startswith("torn down: a (") and "it was not whole" in out[0] and why in out[0], out
    assert out[-1] == "cleanup: 1 torn down, 0 failed", out


def test_a_guest_vg_set_up_again_while_its_snapshot_is_shared_is_refused_in_one_line(world, spec):
    """vgimportclone renamed the guest VG inside the snapshot, which another DLE still holds:
    that name proves nothing of who wrote it, so it is refused, not trusted."""
    from snaplayers.errors import LayerError
    vg = "lvm=data0+vm1,part=2,vg=vg0+root"
    up(world, "b", PART1, spec, 101)
    up(world, "a", vg, spec, 300)
    down(world, "a", 300)
    with pytest.raises(LayerError, match="already imported as snaplayers_[0-9a-f]{12} in the "
                                         "snapshot other DLEs of this disk still read"):
        up(world, "a", vg, spec, 102)
    down(world, "b", 101)
    assert world.kernel_objects() == EMPTY


@pytest.mark.parametrize("layers_", [PART2, PART1])
def test_an_overflowed_or_unmounted_shared_stack_is_not_joined(world, spec, layers_):
    """Amanda's retry of a dump that failed on an overflowed shared snapshot must not read the
    same snapshot again while the other DLE still holds it."""
    up(world, "a", PART1, spec, 101)
    if layers_ == PART2:
        world.system.lvs["data0/vm1.amsnap"]["lv_attr"] = "swi-I-s---"
    else:
        world.system.mount_rows.clear()
    before = world.kernel_objects()
    with pytest.raises(SnapshotInvalid.__base__, match="DLE 'a' .* still reads it"):
        up(world, "b", layers_, spec, 102)
    assert world.kernel_objects() == before and world.stack("b").journal.load() is None


def test_a_stale_stack_whose_amanda_process_cannot_be_checked_is_reaped_by_a_sibling(
        world, spec, monkeypatch):
    """As its own DLE's next set-up would (recover): a leftover, not a reason to refuse the
    other DLEs of the disk until that DLE runs again (it may have left the disklist)."""
    from snaplayers import stack as stack_mod
    world.system.caller = lambda: {"pid": 0, "start": None}         # alive() cannot tell
    world.stack("a").setup(spec(PART1))
    real = stack_mod.time.time
    monkeypatch.setattr(stack_mod.time, "time", lambda: real() + 2 * 43200)
    assert up(world, "b", PART2, spec, 102) == f"{BASE}/{PART2}"
    assert world.stack("a").journal.load() is None and count(world, "lvcreate") == 2
    down(world, "b", 102)
    assert world.kernel_objects() == EMPTY
