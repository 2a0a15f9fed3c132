"""Unwinding, the journal, stale stacks, locks and snapshot overflow."""

import json
import os
import stat
import time

import pytest

from snaplayers.errors import SnaplayersError, Busy, CommandFailed, LayerError, MountVanished, SnapshotInvalid
from snaplayers.journal import KEYS, Journal, allocation_lock, dle_lock

EMPTY = {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}
STACKS = ["lvm=data0+vol00,raid1,part=1", "lvm=data0+vol01,part=2", "lvm=data0+vol02",
          "lvm=data0+vol03,raid1", "lvm=data0+vol04,part=2,raid1,part=1",
          "lvm=data0+vol05,raid1,part=1,vg=vg0+root", "lvm=data0+vol06,raid1,part=1,luks=vm6",
          "lvm=data0+vol07,part=2,luks=k,vg=vg0+swap"]
CREATORS = ("lvcreate", "mdadm --assemble", "dmsetup create", "mount")


def _argv_count(world, layers, spec):
    world.stack().setup(spec(layers))
    return len(world.runner.executed)


@pytest.mark.parametrize("layers", STACKS)
def test_a_failure_at_any_set_up_command_unwinds_everything(tmp_path, spec, layers):
    from conftest import World
    total = _argv_count(World(tmp_path / "count"), layers, spec)
    for k in range(total):
        world = World(tmp_path / str(k))
        calls = []

        def inject(argv, k=k):
            calls.append(argv)
            return (3, "") if len(calls) == k + 1 else None     # a status no command accepts
        world.system.inject = inject
        with pytest.raises((CommandFailed, LayerError)):
            world.stack().setup(spec(layers))
        assert world.kernel_objects() == EMPTY, f"left behind after failing command {k}"
        assert not os.path.exists(world.stack().journal.path)


def test_journal_records_names_before_creation_and_has_fixed_keys(world, spec):
    stack = world.stack()
    seen = []

    def inject(argv):
        if argv[0] in ("lvcreate", "mdadm") and (argv[0] == "lvcreate" or argv[1] == "--assemble"):
            seen.append(json.load(open(stack.journal.path)))
        return None
    world.system.inject = inject
    stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    assert seen[0]["layers"][0]["snapshot"] == "vol00.amsnap"
    assert seen[1]["layers"][1]["device"].startswith("/dev/md/snaplayers-")
    data = json.load(open(stack.journal.path))
    assert set(data) == set(KEYS) and data["state"] == "up"
    assert stat.S_IMODE(os.stat(stack.journal.path).st_mode) == 0o600
    assert [r["kind"] for r in data["layers"]] == ["lvm", "raid1", "part", "mount"]
    assert not [f for f in os.listdir(world.state_dir) if f.endswith(".tmp")]


def test_teardown_uses_the_journal_not_the_device_field(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    md = json.load(open(stack.journal.path))["layers"][1]["md"]
    world.stack().teardown()        # a fresh Stack, as a new POST-DLE process would have
    assert ["mdadm", "--stop", md] in world.commands()
    assert world.kernel_objects() == EMPTY


def test_recent_complete_stack_is_refused_as_busy(world, spec):
    world.stack().setup(spec("lvm=data0+vol02"))
    with pytest.raises(Busy, match="stale-seconds"):
        world.stack().setup(spec("lvm=data0+vol02"))
    assert len(world.kernel_objects()["mounts"]) == 1   # the other run's stack is untouched


def test_complete_stack_of_a_dead_amanda_run_is_torn_down_at_once(world, spec):
    """amdump killed after PRE-DLE-BACKUP: nobody will run POST-DLE-BACKUP, so the next run
    must not wait out stale-seconds."""
    world.stack().setup(spec("lvm=data0+vol02"))
    world.system.processes.pop(4242)          # sendbackup is gone
    before = len(world.runner.executed)
    world.stack().setup(spec("lvm=data0+vol02"))
    cmds = [c[0] for c in world.commands()[before:]]
    assert cmds.index("umount") < cmds.index("lvremove") < cmds.index("lvcreate")
    assert len(world.kernel_objects()["mounts"]) == 1


def test_a_post_call_of_another_live_amanda_process_leaves_the_stack_to_its_owner(world, spec, monkeypatch):
    """amcheck during amdump: selfcheck's PRE-DLE-AMCHECK is refused as busy, but Amanda runs
    its POST-DLE-AMCHECK all the same; that must not take amdump's stack (and its overflow
    check) away from amdump's own POST-DLE-BACKUP."""
    world.stack().setup(spec("lvm=data0+vol02"))
    up = world.kernel_objects()
    selfcheck = {"pid": 5151, "start": "888"}
    world.system.processes[5151] = "888"
    monkeypatch.setattr(world.system, "caller", lambda: selfcheck)
    before = len(world.runner.executed)
    assert world.stack().teardown() is False
    assert world.runner.executed[before:] == [] and world.kernel_objects() == up
    world.system.processes.pop(4242)          # amdump's sendbackup gone: anyone may recover it
    assert world.stack().teardown() is True
    assert world.kernel_objects() == EMPTY


def test_the_owners_own_post_call_and_the_operators_cleanup_tear_down(world, spec, monkeypatch):
    world.stack().setup(spec("lvm=data0+vol02"))
    assert world.stack().teardown() is True             # the caller that set it up
    assert world.kernel_objects() == EMPTY
    world.stack().setup(spec("lvm=data0+vol02"))
    monkeypatch.setattr(world.system, "caller", lambda: {"pid": 5151, "start": "888"})
    world.system.processes[5151] = "888"
    assert world.stack().teardown(force=True) is True   # `snaplayers cleanup`
    assert world.kernel_objects() == EMPTY


def test_a_reused_pid_is_not_taken_for_the_amanda_run(world, spec):
    world.stack().setup(spec("lvm=data0+vol02"))
    world.system.processes[4242] = "999"      # same pid, another process
    world.stack().setup(spec("lvm=data0+vol02"))
    assert len(world.kernel_objects()["mounts"]) == 1


def test_stale_stack_is_torn_down_before_a_new_set_up(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol02"))
    data = stack.journal.load()
    data["started"] = time.time() - world.settings.stale_seconds - 1
    stack.journal.write(data)
    before = len(world.runner.executed)
    world.stack().setup(spec("lvm=data0+vol02"))
    cmds = [c[0] for c in world.commands()[before:]]
    assert cmds.index("umount") < cmds.index("lvremove") < cmds.index("lvcreate")
    assert len(world.kernel_objects()["mounts"]) == 1


# each set-up command that makes something, as the fixture's SIGKILL test plans them: on real
# devices it kills after the first, the md assembly and the last; here after every one
MAKERS = [("lvcreate",), ("mdadm", "--assemble"), ("dmsetup", "create"), ("mkdir",), ("mount",)]


@pytest.mark.parametrize("maker", MAKERS, ids=" ".join)
def test_a_run_killed_right_after_any_command_that_makes_something_is_recovered(world, spec, maker):
    device = "lvm=data0+vol00,raid1,part=1"
    stack = world.stack()

    class Killed(BaseException):
        pass

    def inject(argv):
        if tuple(argv[:len(maker)]) == maker:
            world.system.inject = None
            world.system.answer(argv)       # it is made, then the process dies
            raise Killed()
    world.system.inject = inject
    stack._teardown = lambda *args, **kwargs: None  # SIGKILL: no unwinding happens at all
    with pytest.raises(Killed):
        stack.setup(spec(device))
    assert world.kernel_objects()["lvs"] and world.stack().journal.load()["state"] == "setting-up"
    world.stack().setup(spec(device))           # at once, not after stale-seconds
    objs = world.kernel_objects()
    assert len(objs["arrays"]) == 1 and len(objs["mounts"]) == 1 and objs["lvs"] == ["data0/vol00.amsnap"]
    assert world.stack().teardown() is True
    assert not any(world.kernel_objects().values()), world.kernel_objects()


def test_half_built_stack_of_a_killed_run_is_recovered_at_once(world, spec):
    stack = world.stack()

    class Killed(BaseException):
        pass

    def inject(argv):
        if argv[0] == "mdadm" and argv[1] == "--assemble":
            world.system.inject = None
            world.system.answer(argv)       # the array comes up, then the process dies
            raise Killed()
    world.system.inject = inject
    orig_teardown = stack._teardown
    stack._teardown = lambda *args, **kwargs: None  # SIGKILL: no unwinding happens at all
    with pytest.raises(Killed):
        stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    stack._teardown = orig_teardown
    assert world.kernel_objects()["arrays"] and world.kernel_objects()["lvs"]
    assert stack.journal.load()["state"] == "setting-up"
    world.stack().setup(spec("lvm=data0+vol00,raid1,part=1"))     # at once, not after stale-seconds
    objs = world.kernel_objects()
    assert len(objs["arrays"]) == 1 and len(objs["mounts"]) == 1 and objs["lvs"] == ["data0/vol00.amsnap"]


def test_overflowed_snapshot_is_removed_and_fails_the_teardown(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    world.system.lvs["data0/vol00.amsnap"].update(lv_attr="swi-I-s---", data_percent="100.00")
    with pytest.raises(SnapshotInvalid, match="overflowed"):
        world.stack().teardown()
    assert world.kernel_objects() == EMPTY
    assert world.stack().journal.load() is None


def test_a_mount_gone_before_the_post_call_fails_the_teardown_and_the_rest_goes(world, spec):
    """dmeventd unmounts an overflowed snapshot it monitors (seen on trixie): the dump then read
    the bare mount point, so it must fail, whatever else is still fine."""
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    world.system.mount_rows = []
    with pytest.raises(MountVanished, match="no longer mounted"):
        world.stack().teardown()
    assert world.kernel_objects() == EMPTY
    assert world.stack().journal.load() is None


def test_overflow_and_a_vanished_mount_report_the_overflow(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00"))
    world.system.mount_rows = []
    world.system.lvs["data0/vol00.amsnap"].update(lv_attr="swi-I-s---", data_percent="100.00")
    with pytest.raises(SnapshotInvalid, match="overflowed"):
        world.stack().teardown()
    assert world.kernel_objects() == EMPTY


def test_a_failed_mount_is_unwound_without_a_vanished_mount_error(world, spec):
    world.system.inject = lambda argv: (32, "wrong fs type") if argv[0] == "mount" else None
    with pytest.raises(CommandFailed):
        world.stack().setup(spec("lvm=data0+vol00"))
    assert world.kernel_objects() == EMPTY


def test_busy_mount_stops_teardown_before_the_layers_under_it(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    world.system.inject = lambda argv: (32, "") if argv[0] == "umount" else None
    with pytest.raises(CommandFailed):
        world.stack().teardown()
    assert not any(c[0] in ("lvremove",) or c[:2] == ["mdadm", "--stop"] for c in world.commands())
    assert stack.journal.load()["state"] == "teardown-failed"


def test_foreign_array_under_our_name_is_not_stopped(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol03,raid1"))
    md = stack.journal.load()["layers"][1]["md"]
    world.system.arrays[md]["uuid"] = "ffffffff:ffffffff:ffffffff:ffffffff"
    with pytest.raises(LayerError, match="not stopping"):
        world.stack().teardown()
    assert md in world.system.arrays


def test_foreign_mount_on_our_mount_point_is_not_unmounted(world, spec):
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol02"))
    world.system.mount_rows[0]["majmin"] = "8:1"
    with pytest.raises(LayerError, match="not unmounting"):
        world.stack().teardown()
    assert world.system.mount_rows


def test_mount_point_already_mounted_is_refused(world, spec):
    world.system.mount_rows.append({"majmin": "8:1", "mountpoint": "/v/amsnap/lvm=data0+vol02",
                                    "options": "rw", "fstype": "ext4", "source": "/dev/sda1"})
    with pytest.raises(LayerError, match="already a mount point"):
        world.stack().setup(spec("lvm=data0+vol02"))
    assert world.kernel_objects()["lvs"] == []


def test_a_missing_or_unsafe_mount_base_is_refused_before_any_command(world, spec):
    world.system.dirs.discard("/v/amsnap")
    with pytest.raises(SnaplayersError, match="mount base /v/amsnap is not root's alone"):
        world.stack().setup(spec("lvm=data0+vol02"))
    assert world.runner.executed == []


def test_dle_lock_is_exclusive_and_released(tmp_path):
    with dle_lock(str(tmp_path), "abc", "vol00"):
        with pytest.raises(Busy, match="vol00"):
            with dle_lock(str(tmp_path), "abc", "vol00"):
                pass
        with dle_lock(str(tmp_path), "other", "vol01"):
            pass
    with dle_lock(str(tmp_path), "abc", "vol00"):
        pass


def test_allocation_lock_serialises_across_processes(tmp_path):
    import subprocess
    import sys
    code = ("import sys,time; from snaplayers.journal import allocation_lock\n"
            "with allocation_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(1)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    start = time.monotonic()
    with allocation_lock(str(tmp_path)):
        waited = time.monotonic() - start
    holder.wait()
    assert waited > 0.3


def test_journal_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    journal = Journal(str(tmp_path), "abc")
    journal.write({"version": 1, "state": "up", "layers": []})

    def crash(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        journal.write({"version": 1, "state": "tearing-down", "layers": []})
    monkeypatch.undo()
    assert journal.load()["state"] == "up"
    assert os.listdir(tmp_path) == ["abc.json"]


def test_journal_rejects_unknown_keys(tmp_path):
    with pytest.raises(ValueError):
        Journal(str(tmp_path), "abc").write({"version": 1, "surprise": 1})


def test_the_caller_is_read_from_proc_and_told_apart_from_a_reused_pid():
    from snaplayers.layers import Host
    host = Host()
    me = host.caller()
    assert me["pid"] == os.getppid() and host.alive(me) is True
    assert host.alive({"pid": me["pid"], "start": "1"}) is False
    assert host.alive({"pid": 0, "start": None}) is None and host.alive({}) is None


def test_a_killed_but_unreaped_caller_counts_as_gone():
    import signal
    import subprocess
    from snaplayers.layers import Host
    child = subprocess.Popen(["sleep", "60"])
    host = Host()
    start = host._start_time(child.pid)
    assert host.alive({"pid": child.pid, "start": start}) is True
    os.kill(child.pid, signal.SIGKILL)
    for _ in range(100):          # until the kernel has made it a zombie; we do not reap it yet
        if open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] == "Z":
            break
        time.sleep(0.01)
    assert host.alive({"pid": child.pid, "start": start}) is False
    child.wait()


def test_without_udev_the_stopped_arrays_link_is_removed(world, spec):
    """Seen on trixie: a lingering /dev/md link later pointed at another DLE's array."""
    world.system.udev = False
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00,raid1,part=1"))
    md = json.load(open(stack.journal.path))["layers"][1]["md"]
    world.stack().teardown()
    cmds = world.commands()
    assert cmds.index(["mdadm", "--stop", md]) + 1 == cmds.index(["rm", "-f", "--", md])
    assert not world.system.lingering and world.kernel_objects() == EMPTY
