"""Groups: a VM's LVs snapshotted at one instant by the helper's snapshot-set, shared by the
group's DLEs through journals of the group's own, removed with the phase's last device; and
snapshot-set itself, run against stand-in LVM tools that log what they were asked."""

import json
import os
import signal

import pytest

from snaplayers import helper, privilege
from snaplayers.errors import BadInput

from conftest import BASE

A1, A2, B = (f"{BASE}/lvm=data0+vmA,part=1", f"{BASE}/lvm=data0+vmA,part=2",
             f"{BASE}/lvm=data0+vmB")
GROUP = f"vm1 {A1} {A2} {B}\n"


def call(plugin, command, device, disk, **extra):
    argv = [command, "--execute-where", "client", "--config", "TB", "--host", "storage0",
            "--disk", disk, "--device", device]
    for k, v in extra.items():
        argv += [f"--{k}", v]
    return plugin(*argv)


def write_groups(plugin, text, mode=0o644):
    plugin.groups.write_text(text)
    os.chmod(plugin.groups, mode)


def ran(plugin, tool):
    return [a[1:] for a in plugin.runner.executed if os.path.basename(a[0]) == tool]


def snapshots(plugin):
    return sorted(n for n in plugin.system.lvs if n.endswith(".amsnap"))


def left(plugin):
    """What the state dir still holds besides locks: journals and group state files."""
    return sorted(n for n in os.listdir(plugin.state) if not n.endswith(".lock"))


def test_a_groups_first_set_up_takes_every_lv_at_once_and_its_last_tear_down_removes_them(plugin):
    write_groups(plugin, GROUP)
    assert call(plugin, "PRE-DLE-BACKUP", A1, "a1") == 0
    assert ran(plugin, "snapshot-set") == [["--suffix", ".amsnap", "--size", "20%ORIGIN",
                                            "data0/vmA", "data0/vmB"]]
    assert ran(plugin, "lvcreate") == []
    assert snapshots(plugin) == ["data0/vmA.amsnap", "data0/vmB.amsnap"]
    assert call(plugin, "PRE-DLE-BACKUP", B, "b") == 0
    assert call(plugin, "PRE-DLE-BACKUP", A2, "a2") == 0
    assert len(ran(plugin, "snapshot-set")) == 1 and ran(plugin, "lvcreate") == []
    for device, disk in ((A1, "a1"), (B, "b")):
        assert call(plugin, "POST-DLE-BACKUP", device, disk) == 0
    # B's DLE is done, but the set stays for A2, which still reads; and nothing was removed
    assert snapshots(plugin) == ["data0/vmA.amsnap", "data0/vmB.amsnap"]
    assert ran(plugin, "lvremove") == []
    assert call(plugin, "POST-DLE-BACKUP", A2, "a2") == 0
    assert snapshots(plugin) == [] and left(plugin) == []
    assert sorted(a[-1] for a in ran(plugin, "lvremove")) == ["data0/vmA.amsnap", "data0/vmB.amsnap"]


def test_the_groups_own_journals_hold_its_set_for_status_and_cleanup(plugin):
    from snaplayers.journal import all_journals
    write_groups(plugin, GROUP)
    call(plugin, "PRE-DLE-ESTIMATE", B, "b")
    disks = {data["disk"]: data for _, data in all_journals(str(plugin.state))}
    assert set(disks) == {"b", "group vm1 data0/vmA", "group vm1 data0/vmB"}
    held = disks["group vm1 data0/vmA"]
    assert held["owner"] == {} and held["state"] == "up"
    assert [layer["snapshot"] for layer in held["layers"]] == ["vmA.amsnap"]


@pytest.mark.parametrize("second", [
    ("PRE-DLE-BACKUP", {}),                                # another phase: estimates, then dumps
    ("PRE-DLE-ESTIMATE", {"timestamp": "20261203020000"}),  # another Amanda run
])
def test_another_phase_or_run_gets_a_set_of_its_own(plugin, second):
    write_groups(plugin, GROUP)
    assert call(plugin, "PRE-DLE-ESTIMATE", A1, "a1", timestamp="20261202020000") == 0
    assert call(plugin, "POST-DLE-ESTIMATE", A1, "a1") == 0
    assert snapshots(plugin) == ["data0/vmA.amsnap", "data0/vmB.amsnap"]    # B, A2 to come
    command, extra = second
    assert call(plugin, command, B, "b", **extra) == 0
    sets = ran(plugin, "snapshot-set")
    assert len(sets) == 2
    # the old set went before the new one was made: one removal each, then the new set
    order = [os.path.basename(a[0]) for a in plugin.runner.executed
             if os.path.basename(a[0]) in ("lvremove", "snapshot-set")]
    assert order == ["snapshot-set", "lvremove", "lvremove", "snapshot-set"]


def test_a_device_set_up_again_after_its_tear_down_is_another_run(plugin):
    write_groups(plugin, GROUP)
    call(plugin, "PRE-DLE-BACKUP", A1, "a1")
    call(plugin, "POST-DLE-BACKUP", A1, "a1")
    assert call(plugin, "PRE-DLE-BACKUP", A1, "a1") == 0
    assert len(ran(plugin, "snapshot-set")) == 2


def test_a_set_that_fails_leaves_nothing_and_fails_the_call(plugin, capsys):
    write_groups(plugin, GROUP)
    plugin.system.inject = lambda argv: (5, "") if argv[0] == "snapshot-set" else None
    assert call(plugin, "PRE-DLE-BACKUP", A1, "a1") != 0
    assert "snapshot-set" in capsys.readouterr().err
    assert snapshots(plugin) == [] and left(plugin) == []
    assert ran(plugin, "mount") == []


def test_a_snapshot_someone_else_holds_is_not_taken_into_a_set(plugin, capsys):
    """A DLE outside the group reads vmB: the set cannot be made at one instant now."""
    write_groups(plugin, f"vm1 {A1} {A2} {BASE}/lvm=data0+vmB,part=1\n")
    assert call(plugin, "PRE-DLE-BACKUP", B, "b-alone") == 0
    assert call(plugin, "PRE-DLE-BACKUP", A1, "a1") != 0
    assert "vmB's snapshot is held by DLE 'b-alone'" in capsys.readouterr().err.replace('data0/', '')
    assert ran(plugin, "snapshot-set") == []
    assert call(plugin, "POST-DLE-BACKUP", B, "b-alone") == 0
    assert snapshots(plugin) == [] and left(plugin) == []


@pytest.mark.parametrize("text, word", [
    ("vm/1 " + f"{A1} {B}\n", "'vm/1'"),
    (f"vm1 {A1} {B}\nvm1 {A2} {BASE}/lvm=data0+vmC\n", "'vm1'"),
    (f"vm1 {A1} {B}\nvm2 {A1} {BASE}/lvm=data0+vmC\n", A1),
    (f"vm1 {A1} {B}\nvm2 {A2} {BASE}/lvm=data0+vmC\n", "data0/vmA"),
    (f"vm1 {A1} {A2}\n", "1 LV(s)"),
    (f"vm1 {A1} {BASE}/lvm=data0+vmB,part=x\n", "part=x"),
    (f"vm1 {A1} /elsewhere/lvm=data0+vmB\n", "/elsewhere"),
    ("vm1 " + " ".join(f"{BASE}/lvm=data0+v{i}" for i in range(9)) + "\n", "9 LV(s)"),
])
def test_a_bad_groups_file_is_one_line_naming_it_and_nothing_runs(plugin, capsys, text, word):
    write_groups(plugin, text)
    assert call(plugin, "PRE-DLE-BACKUP", A1, "a1") == BadInput.exit_status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err and "groups file" in err, err
    assert plugin.runner.executed == [] and not plugin.state.exists()


def test_a_groups_file_others_may_write_is_refused(plugin, capsys):
    write_groups(plugin, GROUP, mode=0o666)
    assert call(plugin, "PRE-DLE-BACKUP", A1, "a1") == BadInput.exit_status
    assert "writable by group or others" in capsys.readouterr().err
    assert plugin.runner.executed == []


def test_every_template_of_the_set_is_what_a_group_runs(plugin):
    """2 to 8 origins: each size of set is one argv template; a group of n LVs runs n's."""
    policy = privilege.compile_policy(BASE)
    for n in range(2, 9):
        devices = " ".join(f"{BASE}/lvm=data0+v{n}x{i}" for i in range(n))
        write_groups(plugin, f"g{n} {devices}\n")
        assert call(plugin, "PRE-DLE-BACKUP", f"{BASE}/lvm=data0+v{n}x0", f"d{n}") == 0
        argv = ["snapshot-set", *ran(plugin, "snapshot-set")[-1]]
        assert len(argv) == 5 + n and privilege.admitted(argv, policy)
    assert not privilege.admitted(argv[:5] + ["data0/a"], policy)
    assert not privilege.admitted(argv[:5] + [f"data0/a{i}" for i in range(9)], policy)


# -- snapshot-set, against stand-in tools ------------------------------------------------------
TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
case "$(basename "$0") $*" in
{cases}
esac
"""


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """Stand-ins for lvs, lvcreate, lvremove and dmsetup; each `case` line is shell."""
    log = tmp_path / "calls"
    monkeypatch.setattr(helper, "_mapping_of", lambda dev: dev[len("/dev/mapper/"):])

    def make(**cases):
        paths = {}
        for name in helper.SET_TOOLS:
            path = tmp_path / name
            path.write_text(TOOL.format(log=log, cases=cases.get(name, "")))
            path.chmod(0o755)
            paths[name] = str(path)
        return paths
    make.calls = lambda: log.read_text().splitlines() if log.exists() else []
    return make


DEFAULT = {"lvs": '"lvs --noheadings -o lv_attr,origin "*) echo "  -wi-ao----";;',
           "dmsetup": '"dmsetup info "*) echo Active;;'}
ARGS = ["--suffix", ".amsnap", "--size", "20%ORIGIN", "vg/a", "vg-x/b"]


def test_every_origin_is_held_before_the_first_snapshot_and_resumed_after_the_last(tools):
    paths = tools(**DEFAULT)
    code, out, err = helper.snapshot_set(paths, ARGS)
    assert (code, err) == (0, "") and out.startswith("origins held ")
    acts = [c for c in tools.calls() if not c.startswith(("lvs", "dmsetup info"))]
    assert acts == [
        "dmsetup suspend --nolockfs /dev/mapper/vg-a",
        "dmsetup suspend --nolockfs /dev/mapper/vg--x-b",
        "lvcreate --config global/wait_for_locks=0 --snapshot --name a.amsnap --extents 20%ORIGIN vg/a",
        "lvcreate --config global/wait_for_locks=0 --snapshot --name b.amsnap --extents 20%ORIGIN vg-x/b",
        "dmsetup resume /dev/mapper/vg-a", "dmsetup resume /dev/mapper/vg--x-b"]


def test_a_failed_snapshot_resumes_every_origin_and_removes_what_was_made(tools):
    paths = tools(lvcreate='*"--name b.amsnap"*) echo "  Insufficient free space" >&2; exit 5;;',
                  **{**DEFAULT, "lvs": DEFAULT["lvs"] + '\n"lvs --noheadings -o origin vg/a.amsnap") echo a;;'})
    code, _, err = helper.snapshot_set(paths, ARGS)
    assert code == 5 and "lvcreate of b.amsnap: Insufficient free space" in err
    acts = [c for c in tools.calls() if not c.startswith(("lvs", "dmsetup info"))]
    assert acts[-3:] == ["dmsetup resume /dev/mapper/vg-a", "dmsetup resume /dev/mapper/vg--x-b",
                         "lvremove --yes vg/a.amsnap"]
    assert sum(c.startswith("lvcreate") for c in acts) == 2, "not tried again: no lock was busy"


def test_a_busy_vg_lock_resumes_all_and_tries_the_set_again(tools, tmp_path):
    once = tmp_path / "once"
    paths = tools(lvcreate=f'*"--name a.amsnap"*) [ -e {once} ] || {{ touch {once}; '
                           'echo "  Can\'t get lock for vg." >&2; exit 5; };;', **DEFAULT)
    code, out, _ = helper.snapshot_set(paths, ARGS)
    assert code == 0
    acts = [c for c in tools.calls() if not c.startswith(("lvs", "dmsetup info"))]
    first = acts[:acts.index("dmsetup resume /dev/mapper/vg--x-b") + 1]
    assert first == ["dmsetup suspend --nolockfs /dev/mapper/vg-a",
                     "dmsetup suspend --nolockfs /dev/mapper/vg--x-b",
                     "lvcreate --config global/wait_for_locks=0 --snapshot --name a.amsnap "
                     "--extents 20%ORIGIN vg/a",
                     "dmsetup resume /dev/mapper/vg-a", "dmsetup resume /dev/mapper/vg--x-b"]
    assert out.count("origins held") == 2


def test_the_hold_never_passes_its_bound(tools, monkeypatch):
    monkeypatch.setattr(helper, "SET_HOLD", 0.5)
    paths = tools(**{**DEFAULT, "dmsetup": DEFAULT["dmsetup"] + '\n"dmsetup suspend "*) sleep 0.3;;'})
    code, _, err = helper.snapshot_set(paths, ARGS)
    assert code == 5 and "held 0.5 s before vg/a's snapshot" in err
    acts = [c for c in tools.calls() if not c.startswith(("lvs", "dmsetup info"))]
    assert not any(c.startswith("lvcreate") for c in acts)
    assert acts[-2:] == ["dmsetup resume /dev/mapper/vg-a", "dmsetup resume /dev/mapper/vg--x-b"]


def test_a_signal_during_the_hold_waits_until_every_origin_is_resumed(tools, tmp_path):
    """sudo passes the Amanda user's SIGTERM on to the helper: it must not leave a VM's disks
    suspended. The stand-in lvcreate signals the helper (its parent) in the middle of the set."""
    seen = []
    old = signal.signal(signal.SIGTERM, lambda *a: seen.append(tools.calls()[-1]))
    try:
        paths = tools(lvcreate='*"--name a.amsnap"*) kill -TERM $PPID;;', **DEFAULT)
        code, _, err = helper.snapshot_set(paths, ARGS)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert code == 0, err
    assert seen == ["dmsetup resume /dev/mapper/vg--x-b"], "the signal came before the resume"


@pytest.mark.parametrize("args, word", [
    (ARGS[:5], "two or more origins"),
    (["--suffix", ".amsnap", "--size", "20%ORIGIN", "vg/a", "vg/a"], "each origin once"),
    (["--size", "20%ORIGIN", "--suffix", ".amsnap", "vg/a", "vg/b"], "takes --suffix, --size"),
])
def test_a_set_that_is_not_one_is_refused_before_anything_runs(tools, args, word):
    paths = tools(**DEFAULT)
    with pytest.raises(helper.Refused, match=word):
        helper.snapshot_set(paths, args)
    assert tools.calls() == []


@pytest.mark.parametrize("lvs, dmsetup, word", [
    ('echo "  swi-a-s--- a"', DEFAULT["dmsetup"], "no origin volume"),
    ('echo "  twi-aotz--"', DEFAULT["dmsetup"], "no origin volume"),
    (None, '"dmsetup info "*) echo Suspended;;', "is Suspended: another command is changing it"),
])
def test_a_snapshot_pool_or_suspended_origin_is_never_held(tools, lvs, dmsetup, word):
    cases = {"dmsetup": dmsetup, "lvs": DEFAULT["lvs"] if lvs is None else
             f'"lvs --noheadings -o lv_attr,origin "*) {lvs};;'}
    paths = tools(**cases)
    try:
        code, _, err = helper.snapshot_set(paths, ARGS)
    except helper.Refused as refused:
        code, err = helper.REFUSED, str(refused)
    assert code != 0 and word in err
    assert not any(c.startswith(("dmsetup suspend", "lvcreate")) for c in tools.calls())


def test_the_helper_serves_the_set_as_any_command(tools):
    """Through `--serve`, as sudo runs it: a set is one request and one answer line."""
    import io
    policy = {**privilege.compile_policy(BASE), "tools": tools(**DEFAULT)}
    out = io.StringIO()
    helper.serve(policy, iter([json.dumps(["snapshot-set", *ARGS]) + "\n"]), out)
    code, stdout, stderr = json.loads(out.getvalue())
    assert code == 0 and stdout.startswith("origins held") and stderr == ""
    assert sum(c.startswith("lvcreate") for c in tools.calls()) == 2
