"""`snaplayers discover` against the simulated host: which layers it walks, what it finds and
skips, and that every probe is torn down. The real walk is tests/e2e/test_discovered_disklist.py."""

import os
import re

import pytest

from snaplayers import cli, helper
from snaplayers.discover import Discovery, ProbeHost, disk_name, physical_volumes, spindles
from snaplayers.device import Lvm, Part, Raid1, Vg
from snaplayers.privilege import compile_policy
from snaplayers.props import Settings

from conftest import BASE
from simhost import AMANDA_PID, SteeredSystem

KEY_DIR = "/etc/snaplayers/keys"
HOST_LVS = [
    # vg, lv, attr, origin, pool, devices
    ("data0", "vm1", "-wi-ao----", "", "", "/dev/sda2(0)"),
    ("data0", "vm2", "-wi-ao----", "", "", "/dev/sdb(0),/dev/sda2(100)"),
    ("data0", "empty", "-wi-a-----", "", "", "/dev/sdc(0)"),
    ("data0", "pool", "twi-aotz--", "", "", "[pool_tdata](0)"),
    ("data0", "[pool_tdata]", "Twi-ao----", "", "", "/dev/sdd(0)"),
    ("data0", "vm1.amsnap", "swi-a-s---", "vm1", "", "/dev/sda2(50)"),
    ("data0", "old", "-wi-------", "", "", "/dev/sdc(10)"),
]


def lvs_rows(free=3 * 2**30):
    keys = ("VG_NAME", "LV_NAME", "LV_ATTR", "ORIGIN", "POOL_LV", "DEVICES")
    return "".join("  " + " ".join(f"LVM2_{k}='{v}'" for k, v in zip(keys, row))
                   + f" LVM2_VG_FREE='{free}B'\n" for row in HOST_LVS)


# what blkid finds on each device a probe offers: the devices' names say which layer made them
BLKID = [
    (r"/dev/mapper/data0-vm1\.amdisc", "TYPE=linux_raid_member"),
    (r"/dev/md\d+", "PTTYPE=gpt"),
    (r"/dev/mapper/snaplayers-\w+-2p1", "TYPE=ext4"),          # vm1: md, partition 1
    (r"/dev/mapper/snaplayers-\w+-2p2", "TYPE=LVM2_member"),   # vm1: md, partition 2
    (r"/dev/mapper/snaplayers_\w+-root", "TYPE=ext4"),
    (r"/dev/mapper/snaplayers_\w+-var", "TYPE=xfs"),
    (r"/dev/mapper/snaplayers_\w+-swap", "TYPE=swap"),
    (r"/dev/mapper/data0-vm2\.amdisc", "PTTYPE=gpt"),
    (r"/dev/mapper/snaplayers-\w+-1p1", "TYPE=crypto_LUKS"),   # vm2: partition 1
    (r"/dev/mapper/snaplayers-\w+-1p2", "TYPE=swap"),
    (r"/dev/mapper/snaplayers-\w+-2c", "TYPE=ext4"),           # vm2: inside the LUKS
    (r"/dev/mapper/data0-empty\.amdisc", None),
]


class Host(SteeredSystem):
    def caller(self):
        return {"pid": AMANDA_PID, "start": "777"}      # alive: this process

    def read(self, path):
        if path == "/proc/swaps":
            return "Filename Type Size Used Priority\n"
        return super().read(path)


@pytest.fixture
def world(tmp_path, monkeypatch):
    # the one guard that asks the real LVM (is it a snapshot of ours?) has no host here
    monkeypatch.setattr(helper, "_guard_lvremove", lambda policy, args: None)
    system = Host(suffix=".amdisc")
    system.guest = ("vg0", ["root", "var", "swap"])
    system.add_dir(BASE)
    for key in ("k0", "k1", ".hidden"):
        system.add_dir(f"{KEY_DIR}/{key}.key")

    def inject(argv):
        if argv[:2] == ["lvs", "-a"]:
            return (0, lvs_rows())
        if argv[0] == "blkid":
            found = next((out for pattern, out in BLKID if re.fullmatch(pattern, argv[-1])), "?")
            assert found != "?", f"blkid of an unexpected device {argv[-1]}"
            return (0, found + "\n") if found else (2, "")
        if argv[:2] == ["partx", "--raw"] and "--nr" not in argv:
            return (0, "1 2048 262144\n2 264192 262144\n")
        if argv[:2] == ["cryptsetup", "open"] and "--test-passphrase" in argv:
            return (0, "") if argv[argv.index("--key-file") + 1].endswith("/k1.key") else (2, "")
        if argv[0] == "lvcreate":
            system.pvs.clear()      # a new snapshot holds the guest's VG as the guest wrote it
        return None
    system.inject = inject
    settings = Settings(mount_base=BASE, snap_suffix=".amdisc", state_dir=str(tmp_path / "state"),
                        log_dir=str(tmp_path / "log"), key_dir=KEY_DIR, sudo="no")
    runner, stacks = system.runner(), system.runner()
    # as the CLI has it: the probe stacks run only what the installed helper would admit
    stacks.policy = compile_policy(BASE, ".amdisc", KEY_DIR)
    return system, runner, Discovery(settings, runner, system, "storage0", stacks=stacks)


def commands(found, *prefix):
    """What discover ran itself and what its probe stacks ran, in one list per kind."""
    return [a for a in found.runner.executed + found.stacks.executed
            if [os.path.basename(a[0]), *a[1:len(prefix)]] == list(prefix)]


def ours(arg):
    """A device or name a probe made: its snapshot, its mappings and arrays, a renamed guest VG."""
    return bool(re.search(r"\.amdisc|snaplayers[-_]|^/dev/md\d+$", arg))


def test_every_filesystem_inside_is_found_and_every_probe_torn_down(world, tmp_path):
    system, runner, found = world
    found.discover([], spindle=False)
    assert sorted(f.device for f in found.found) == [
        f"{BASE}/lvm=data0+vm1,raid1,part=1",
        f"{BASE}/lvm=data0+vm1,raid1,part=2,vg=vg0+root",
        f"{BASE}/lvm=data0+vm1,raid1,part=2,vg=vg0+var",
        f"{BASE}/lvm=data0+vm2,part=1,luks=k1"]
    assert {f.device.rsplit(",", 1)[-1]: f.fstype for f in found.found}["vg=vg0+var"] == "xfs"
    skipped = {s.where: s.why for s in found.skipped}
    assert skipped == {
        "data0/vm1/raid1/part=2/vg=vg0+swap": "swap",
        "data0/vm2/part=2": "swap",
        "data0/empty": "no filesystem (blkid finds nothing)",
        "data0/pool": "not an origin volume (lv_attr twi-aotz--)",
        "data0/old": "not active: there is no device to read"}
    # vgimportclone renamed the guest VG in the snapshot: a new one for each further guest LV
    assert len(commands(found, "lvcreate")) == 5
    assert len(commands(found, "vgimportclone")) == 3
    # nothing is left: no snapshot, array, mapping, open container or active guest LV, no journal
    nothing_left(system, tmp_path)
    # read-only towards what is the host's: every device any command names is a probe's own,
    # and every command that makes or removes something names one of ours
    for argv in commands(found):
        assert all(ours(a) for a in argv if a.startswith("/dev/")), argv
        if os.path.basename(argv[0]) in ("lvremove", "lvchange", "vgchange", "vgimportclone",
                                         "mdadm", "dmsetup", "cryptsetup"):
            assert any(ours(a) for a in argv[1:]), argv
    # lvcreate names the host's origin, and makes a probe's snapshot of it
    assert all(a[a.index("--name") + 1].endswith(".amdisc") for a in commands(found, "lvcreate"))


def test_the_disklist_names_each_filesystem_where_it_sits(world):
    system, runner, found = world
    found.discover([], spindle=False)
    text = found.disklist("snaplayers-amgtar")
    lines = text.splitlines()
    assert lines[0].startswith("# snaplayers discover on storage0: 4 filesystem(s), 5 skipped")
    assert (f"storage0 data0/vm1/raid1/part=2/vg=vg0+root {BASE}/lvm=data0+vm1,raid1,part=2,vg=vg0+root "
            "snaplayers-amgtar -1") in lines
    assert "# skipped data0/vm2/part=2: swap" in lines
    assert [ln for ln in lines if not ln.startswith("#")] == sorted(ln for ln in lines if not ln.startswith("#"))


def test_a_failed_layer_is_a_skip_with_its_reason_and_the_rest_goes_on(world):
    system, found, why = failing(world, lambda argv: argv[:2] == ["mdadm", "--examine"],
                                 (0, "MD_LEVEL=raid5\nMD_DEVICES=3\n"))
    assert [f.device for f in found.found] == [f"{BASE}/lvm=data0+vm2,part=1,luks=k1"]
    assert "raid5" in why["data0/vm1/raid1"], why
    assert system.arrays == {} and not [n for n in system.lvs if n.endswith(".amdisc")]


def test_disk_names_are_stable_and_name_the_lv_and_the_layers():
    tokens = [Lvm("data0", "vm17"), Raid1(), Part(3), Vg("vg0", "root")]
    assert disk_name(tokens) == "data0/vm17/raid1/part=3/vg=vg0+root"
    assert disk_name(tokens) == disk_name(list(tokens))
    assert disk_name([Lvm("data1", "vm17")]) != disk_name([Lvm("data0", "vm17")])


def test_spindles_group_lvs_that_share_a_physical_disk():
    got = spindles({"data0/a": {"sda"}, "data0/b": {"sdb"}, "data0/c": {"sdb", "sdc"},
                    "data0/d": {"sdc"}, "data1/e": {"sde"}})
    assert got["data0/b"] == got["data0/c"] == got["data0/d"]
    assert len({got["data0/a"], got["data0/b"], got["data1/e"]}) == 3
    # numbered by each group's first disk: the same host gives the same numbers every run
    assert got == {"data0/a": 1, "data0/b": 2, "data0/c": 2, "data0/d": 2, "data1/e": 3}
    assert spindles(dict(reversed(list({"data0/a": {"sda"}, "data1/e": {"sde"}}.items())))) == \
        {"data0/a": 1, "data1/e": 2}


def test_an_lvs_physical_volumes_follow_sub_lvs_and_a_thin_pool():
    rows = [{"vg_name": vg, "lv_name": lv, "lv_attr": a, "origin": o, "pool_lv": p, "devices": d}
            for vg, lv, a, o, p, d in HOST_LVS]
    rows.append({"vg_name": "data0", "lv_name": "thin1", "lv_attr": "Vwi-a-tz--", "origin": "",
                 "pool_lv": "pool", "devices": ""})
    assert physical_volumes(rows, "data0", "vm2") == {"/dev/sdb", "/dev/sda2"}
    assert physical_volumes(rows, "data0", "thin1") == {"/dev/sdd"}


def test_a_partition_and_a_dm_device_lie_on_their_disks(tmp_path):
    class Sys(ProbeHost):
        tree = {"/sys/class/block/dm-3/slaves": ["sda2", "md0"], "/sys/class/block/md0/slaves": ["sdb1", "sdc1"]}

        def realpath(self, path):
            return {"/dev/mapper/x": "/dev/dm-3", "/sys/class/block/sda2": "/sys/devices/x/block/sda/sda2",
                    "/sys/class/block/sdb1": "/sys/devices/x/block/sdb/sdb1",
                    "/sys/class/block/sdc1": "/sys/devices/x/block/sdc/sdc1"}.get(path, path)

        def exists(self, path):
            partitions = ("sda2", "sdb1", "sdc1")
            return path in self.tree or path in [f"/sys/class/block/{p}/partition" for p in partitions]

        def listdir(self, path):
            return self.tree[path]
    assert Sys().disks("/dev/mapper/x") == {"sda", "sdb", "sdc"}
    assert Sys().disks("/dev/loop4") == {"loop4"}


@pytest.mark.parametrize("argv, token", [
    (["--vg", "data0;x"], "data0;x"),
    (["--host", "a b"], "a b"),
    (["--dumptype", "x\"y"], "x\"y"),
])
def test_bad_options_are_one_line_and_nothing_runs(argv, token, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr("snaplayers.run.Runner.run", lambda *a, **k: ran.append(a))
    assert cli.main(["discover", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and token in err and not ran


def test_not_as_root_it_refuses_before_running_anything(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr("snaplayers.run.Runner.run", lambda *a, **k: ran.append(a))
    assert cli.main(["discover", "--mount-base", BASE]) == 1
    err = capsys.readouterr().err
    assert "must run as root" in err and len(err.splitlines()) == 1 and not ran


def test_a_probe_snapshot_that_overflowed_proves_nothing_of_its_lv(world):
    system, runner, found = world
    inner = system.inject

    def vm2_written_meanwhile(argv):
        if argv[0] == "blkid" and argv[-1].endswith("-1p1"):      # inside vm2's snapshot
            system.lvs["data0/vm2.amdisc"]["data_percent"] = "100.00"
        return inner(argv)
    system.inject = vm2_written_meanwhile
    found.discover([], spindle=False)
    assert not [f for f in found.found if f.origin == "data0/vm2"]
    assert len(found.found) == 3
    why = {s.where: s.why for s in found.skipped}
    assert "overflowed" in why["data0/vm2"] and "larger --size" in why["data0/vm2"], why
    assert "data0/vm2/part=2" not in why
    assert not [n for n in system.lvs if n.endswith(".amdisc")] and system.crypts == {}


@pytest.mark.parametrize("use, expected", [
    ("mounted", "in use by this host: mounted at /srv/data"),
    ("swap", "in use by this host: swap"),
    ("held", "in use by this host: md9 lies on it"),
    ("idle", None),
])
def test_an_lv_the_host_itself_uses_is_not_probed(use, expected, tmp_path):
    system = Host(suffix=".amdisc")
    system.add_lv("data0", "hostlv")
    dev = "/dev/mapper/data0-hostlv"
    if use == "mounted":
        system.mount_rows.append({"majmin": system.rdev(dev), "mountpoint": "/srv/data",
                                  "options": "rw", "fstype": "ext4", "source": dev})
    if use == "swap":
        system.read = lambda path: f"Filename Type Size Used Priority\n{dev} partition 8 0 -2\n"
    if use == "held":
        system.arrays["/dev/md/x"] = {"uuid": "u", "level": "raid1", "kernel": "md9", "member": dev}
    settings = Settings(mount_base=BASE, snap_suffix=".amdisc", state_dir=str(tmp_path), sudo="no")
    found = Discovery(settings, system.runner(), system, "storage0")
    assert found.in_use({"vg_name": "data0", "lv_name": "hostlv"}) == expected


@pytest.mark.parametrize("free_gib, maxdumps, verdict", [(3, 2, "enough"), (3, 4, "enough"),
                                                          (1.25, 2, "NOT ENOUGH: it would run out"),
                                                          (1.25, 1, "enough")])
def test_capacity_sums_the_largest_snapshots_lvm_took_against_the_vgs_free_space(world, free_gib, maxdumps, verdict):
    system, runner, found = world
    inner = system.inject
    took = {"vm1": 2**29, "vm2": 2**30}      # what LVM made each probe's snapshot (not the origin)

    def answer(argv):
        if argv[:2] == ["lvs", "-a"]:
            return (0, lvs_rows(int(free_gib * 2**30)))
        snap = system.lvs.get(argv[-1], {})
        if argv[0] == "lvs" and argv[-1].endswith(".amdisc") and snap:
            snap["lv_size"] = f"{took.get(argv[-1].split('/')[1][:-7], 2**28)}B"
        return inner(argv)
    system.inject = answer
    found.discover([], spindle=False)
    [c] = found.capacity(maxdumps)
    need = {1: 2**30, 2: 2**30 + 2**29}[min(2, maxdumps)]     # the largest first
    assert (c["vg"], c["snapshots"], c["at_once"]) == ("data0", 2, min(2, maxdumps))
    assert c["need_bytes"] == need and c["free_bytes"] == int(free_gib * 2**30)
    line = found.disklist("snaplayers-amgtar", maxdumps).splitlines()[1]
    assert line == (f"# capacity, maxdumps {maxdumps}: VG data0: {free_gib * 1024:.1f} MiB free; 2 snapshot(s) "
                    f"at size 20%ORIGIN, the {min(2, maxdumps)} largest at once take "
                    f"{need / 2**20:.1f} MiB: {verdict}")


def failing(world, when, reply=(1, "")):
    system, runner, found = world
    inner = system.inject
    system.inject = lambda argv: reply if when(argv) else inner(argv)
    found.discover([], spindle=False)
    return system, found, {s.where: s.why for s in found.skipped}


def nothing_left(system, tmp_path):
    assert not [n for n in system.lvs if n.endswith(".amdisc")]
    assert system.arrays == {} and system.mappings == {} and system.crypts == {}
    assert not any(on for lvs in system.guest_lvs.values() for on in lvs.values())
    assert not [n for n in os.listdir(tmp_path / "state") if n.endswith(".json")]


def test_a_command_that_fails_on_what_the_guest_wrote_is_a_skip_and_the_rest_goes_on(world, tmp_path):
    system, found, why = failing(world, lambda argv: argv[0] == "partx" and "--nr" not in argv
                                 and argv[-1].startswith("/dev/md"))
    assert "partx --raw --noheadings --output NR,START,SECTORS /dev/md" in why["data0/vm1/raid1"], why
    assert [f.device for f in found.found] == [f"{BASE}/lvm=data0+vm2,part=1,luks=k1"]
    nothing_left(system, tmp_path)


def test_a_table_changed_between_two_snapshots_is_a_skip_not_a_failed_run(world, tmp_path):
    """The guest rewrote partition 2 after the first snapshot: the second guest LV's new one
    has none."""
    system, runner, found = world
    inner = system.inject

    def rewritten(argv):
        if argv[0] == "partx" and "--nr" in argv and argv[-2] == "2" and commands(found, "vgimportclone"):
            return (1, "")
        return inner(argv)
    system.inject = rewritten
    found.discover([], spindle=False)
    why = {s.where: s.why for s in found.skipped}
    assert "has no partition 2" in why["data0/vm1/raid1/part=2"], why
    devices = sorted(f.device for f in found.found)
    assert devices == [f"{BASE}/lvm=data0+vm1,raid1,part=1", f"{BASE}/lvm=data0+vm1,raid1,part=2,vg=vg0+root",
                       f"{BASE}/lvm=data0+vm2,part=1,luks=k1"]
    nothing_left(system, tmp_path)


def test_overlapping_or_too_many_partitions_are_not_walked(world, tmp_path):
    system, found, why = failing(world, lambda argv: argv[0] == "partx" and "--nr" not in argv,
                                 (0, "1 2048 262144\n2 4096 262144\n"))
    assert why["data0/vm2"] == "partitions 1 and 2 of its gpt table overlap", why
    assert found.found == [] and not commands(found, "dmsetup", "create")
    nothing_left(system, tmp_path)
    rows = "".join(f"{n} {2048 * n} 2048\n" for n in range(1, 34))
    system, found, why = failing(world, lambda argv: argv[0] == "partx" and "--nr" not in argv, (0, rows))
    assert why["data0/vm2"] == "a gpt table of 33 partitions, more than 32", why


def test_a_walk_that_fans_out_stops_at_its_limit(world, tmp_path, monkeypatch):
    from snaplayers import discover
    monkeypatch.setattr(discover, "MAX_PROBES", 3)
    system, runner, found = world
    found.discover([], spindle=False)
    why = {s.where: s.why for s in found.skipped}
    assert why["data0/vm1/raid1/part=2"].startswith("not probed: this LV's walk reached its limit"), why
    assert [f.device for f in found.found if f.origin == "data0/vm1"] == [f"{BASE}/lvm=data0+vm1,raid1,part=1"]
    nothing_left(system, tmp_path)


def test_only_plain_guest_lvs_are_activated(world, tmp_path):
    system, runner, found = world
    inner = system.inject

    def typed(argv):
        if argv[0] == "lvs" and "--config" in argv and argv[-1] == "vg0":
            code, out = system._cmd_lvs(argv[1:])
            out = out.replace("LVM2_LV_NAME='var' LVM2_LV_ATTR='-wi", "LVM2_LV_NAME='var' LVM2_LV_ATTR='Vwi")
            # var: a thin LV of the guest's own pool; swap: a plain-looking LV of segment type raid1
            return code, "".join(line.replace("'linear'", "'raid1'") if "'swap'" in line else line
                                 for line in out.splitlines(keepends=True))
        return inner(argv)
    system.inject = typed
    found.discover([], spindle=False)
    why = {s.where: s.why for s in found.skipped}
    assert why["data0/vm1/raid1/part=2/vg=vg0+var"].startswith("a guest LV of type linear (lv_attr Vwi"), why
    assert why["data0/vm1/raid1/part=2/vg=vg0+swap"].startswith("a guest LV of type raid1 (lv_attr -wi"), why
    assert not [a for a in commands(found, "lvchange") if a[-1].endswith(("/var", "/swap"))]
    nothing_left(system, tmp_path)


def test_a_luks2_header_with_tokens_is_never_opened(world, tmp_path, monkeypatch):
    from snaplayers import discover

    def tokens(args):
        raise helper.Refused(f"{args[0]!r}: its LUKS2 header has tokens (1)")
    monkeypatch.setattr(discover, "_guard_luks", tokens)
    system, runner, found = world
    found.discover([], spindle=False)
    why = {s.where: s.why for s in found.skipped}
    assert "not opened" in why["data0/vm2/part=1"] and "tokens" in why["data0/vm2/part=1"], why
    assert not commands(found, "cryptsetup")
    nothing_left(system, tmp_path)


def test_a_signal_lets_the_running_command_finish_and_every_probe_is_torn_down(world, tmp_path):
    from snaplayers.discover import Interrupt, ProbeRunner
    from snaplayers.run import ScriptedRunner
    system, _, found = world
    stop = Interrupt()

    class Scripted(ProbeRunner):            # the real ProbeRunner, answered by the simulator
        _spawn = ScriptedRunner._spawn
        answer = staticmethod(system.answer)
    found.runner, found.stacks = Scripted(stop), Scripted(stop, policy=found.stacks.policy)
    inner = system.inject
    seen = []

    def signal_during(argv):
        if argv[0] == "mdadm" and argv[1] == "--assemble":
            stop.signal()                   # Ctrl-C while mdadm runs: it is not cut short
            seen.append("assemble")
        return inner(argv)
    system.inject = signal_during
    with pytest.raises(KeyboardInterrupt):
        found.discover([], spindle=False)
    assert seen == ["assemble"] and commands(found, "mdadm", "--stop")
    stop.signal()                           # a second signal while tearing down changes nothing
    nothing_left(system, tmp_path)


def test_a_probe_command_runs_in_a_session_of_its_own(tmp_path):
    """A Ctrl-C at the terminal goes to the foreground process group: never to the LVM or
    mdadm command discover runs, which must finish (an origin could stay suspended)."""
    from snaplayers.discover import Interrupt, ProbeRunner
    out = ProbeRunner(Interrupt()).run(["sh", "-c", "cut -d' ' -f6 /proc/$$/stat"]).stdout
    assert int(out) != os.getsid(0)
