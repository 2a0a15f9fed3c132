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


def test_an_amcheck_during_a_run_reads_its_set_and_never_ends_it(plugin):
    write_groups(plugin, GROUP)
    call(plugin, "PRE-DLE-BACKUP", A1, "a1", timestamp="20261202020000")
    call(plugin, "POST-DLE-BACKUP", A1, "a1")
    assert call(plugin, "PRE-DLE-AMCHECK", B, "b-check") == 0
    assert call(plugin, "POST-DLE-AMCHECK", B, "b-check") == 0
    assert snapshots(plugin) == ["data0/vmA.amsnap", "data0/vmB.amsnap"]
    # the run's remaining dumps read the instant its first one did
    for device, disk in ((B, "b"), (A2, "a2")):
        assert call(plugin, "PRE-DLE-BACKUP", device, disk, timestamp="20261202020000") == 0
        assert call(plugin, "POST-DLE-BACKUP", device, disk) == 0
    assert len(ran(plugin, "snapshot-set")) == 1
    assert snapshots(plugin) == [] and left(plugin) == []


def test_a_set_whose_state_file_was_lost_is_removed_before_a_new_one(plugin):
    """Killed between its journals and its state file: the next set-up takes the old
    snapshots away first instead of failing on them for ever."""
    write_groups(plugin, GROUP)
    call(plugin, "PRE-DLE-BACKUP", A1, "a1")
    for name in os.listdir(plugin.state):
        if name.endswith(".set"):
            os.unlink(plugin.state / name)
    call(plugin, "POST-DLE-BACKUP", A1, "a1")
    assert call(plugin, "PRE-DLE-BACKUP", B, "b") == 0
    assert len(ran(plugin, "snapshot-set")) == 2 and len(ran(plugin, "lvremove")) == 2
    assert snapshots(plugin) == ["data0/vmA.amsnap", "data0/vmB.amsnap"]


@pytest.mark.parametrize("forged", ['{"phase": "BACKUP", "made": "x", "done": [], "devices": []}',
                                    '[1, 2]', 'not json', '{"made": 1e400}'])
def test_a_state_file_that_is_not_the_sets_is_a_new_set(plugin, capsys, forged):
    """The state dir is the Amanda user's: whatever is there, the set is judged gone, never a
    crash; while a DLE still reads the old one, that is one line, and then a new set."""
    write_groups(plugin, GROUP)
    call(plugin, "PRE-DLE-BACKUP", A1, "a1")
    [path] = [plugin.state / n for n in os.listdir(plugin.state) if n.endswith(".set")]
    path.write_text(forged)
    capsys.readouterr()
    assert call(plugin, "PRE-DLE-BACKUP", B, "b") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "snapshot is held by DLE 'a1'" in err, err
    assert call(plugin, "POST-DLE-BACKUP", A1, "a1") == 0
    assert call(plugin, "PRE-DLE-BACKUP", B, "b") == 0
    assert len(ran(plugin, "snapshot-set")) == 2


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
# each stand-in logs its argv; dmsetup keeps each device's suspended state in a file, and an
# lvcreate resumes its own origin as LVM's does; `cases` add shell case lines before those
TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> {dir}/calls
case "$(basename "$0") $*" in
{cases}
"dmsetup suspend "*) touch "{dir}/susp$(echo "$4" | tr / _)";;
"dmsetup resume "*) rm -f "{dir}/susp$(echo "$3" | tr / _)";;
"dmsetup info "*) [ -e "{dir}/susp$(echo "$7" | tr / _)" ] && echo Suspended || echo Active;;
"lvcreate "*) o="$(echo "$9" | sed 's|^vg-x/|vg--x-|; s|^vg/|vg-|')"; rm -f "{dir}/susp_dev_mapper_$o";;
"lvs --noheadings -o lv_attr,origin "*) echo "  -wi-ao----";;
esac
"""


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """Stand-ins for lvs, lvcreate, lvremove and dmsetup (TOOL); each `case` line is shell."""
    monkeypatch.setattr(helper, "_mapping_of", lambda dev: (dev[len("/dev/mapper/"):], "250:1"))
    monkeypatch.setattr(helper, "_host_uses", lambda majmin: None)

    def make(**cases):
        paths = {}
        for name in helper.SET_TOOLS:
            path = tmp_path / name
            path.write_text(TOOL.format(dir=tmp_path, cases=cases.get(name, "")))
            path.chmod(0o755)
            paths[name] = str(path)
        return paths
    make.calls = lambda: ((tmp_path / "calls").read_text().splitlines()
                          if (tmp_path / "calls").exists() else [])
    make.acts = lambda: [c for c in make.calls() if not c.startswith(("lvs", "dmsetup info"))]
    make.suspended = lambda: sorted(p.name for p in tmp_path.glob("susp*"))
    return make


A_MADE = '"lvs --noheadings -o origin vg/a.amsnap") echo a;;'    # LVM: a.amsnap is a snapshot
ARGS = ["--suffix", ".amsnap", "--size", "20%ORIGIN", "vg/a", "vg-x/b"]
SUSPEND = ["dmsetup suspend --nolockfs /dev/mapper/vg-a", "dmsetup suspend --nolockfs /dev/mapper/vg--x-b"]
CREATE = ["lvcreate --config global/wait_for_locks=0 --snapshot --name a.amsnap --extents 20%ORIGIN vg/a",
          "lvcreate --config global/wait_for_locks=0 --snapshot --name b.amsnap --extents 20%ORIGIN vg-x/b"]
RESUME = ["dmsetup resume /dev/mapper/vg-a", "dmsetup resume /dev/mapper/vg--x-b"]


def test_every_origin_is_held_before_the_first_snapshot_and_resumed_after_the_last(tools):
    code, out, err = helper.snapshot_set(tools(), ARGS)
    assert (code, err) == (0, "") and out.startswith("origins held ")
    assert tools.acts() == SUSPEND + CREATE + RESUME
    assert tools.suspended() == []


def test_a_failed_snapshot_resumes_every_origin_and_removes_what_was_made(tools):
    paths = tools(lvcreate='*"--name b.amsnap"*) echo "  Insufficient free space" >&2; exit 5;;',
                  lvs=A_MADE)
    code, _, err = helper.snapshot_set(paths, ARGS)
    assert code == 5 and "lvcreate of b.amsnap: Insufficient free space" in err
    assert tools.acts() == SUSPEND + CREATE + RESUME + ["lvremove --yes vg/a.amsnap"], \
        "not tried again: no lock was busy"
    assert tools.suspended() == []


def test_a_busy_vg_lock_resumes_all_and_tries_the_set_again(tools, tmp_path):
    once = tmp_path / "once"
    paths = tools(lvcreate=f'*"--name a.amsnap"*) [ -e {once} ] || {{ touch {once}; '
                           'echo "  Can\'t get lock for vg." >&2; exit 5; };;')
    code, out, _ = helper.snapshot_set(paths, ARGS)
    assert code == 0 and out.count("origins held") == 2
    assert tools.acts() == SUSPEND + CREATE[:1] + RESUME + SUSPEND + CREATE + RESUME
    assert tools.suspended() == []


def test_the_hold_never_passes_its_bound(tools, monkeypatch):
    """A suspend (or lvcreate) that has not ended by the deadline is left running: every origin
    is resumed first, at the deadline, and the set fails."""
    monkeypatch.setattr(helper, "SET_HOLD", 1.0)
    paths = tools(dmsetup='"dmsetup suspend --nolockfs /dev/mapper/vg--x-b") sleep 3;;')
    code, out, err = helper.snapshot_set(paths, ARGS)
    assert code == 5 and "ran past the 1 s hold" in err
    held = float(out.split()[2])
    assert 1.0 <= held < 2.0, out
    assert not any(c.startswith("lvcreate") for c in tools.acts())
    assert tools.acts()[-2:] == RESUME and tools.suspended() == []


def test_an_lvcreate_past_the_hold_resumes_all_and_tries_the_set_again(tools, tmp_path, monkeypatch):
    """The full suite's 11 set-ups at once under TCG took one lvcreate past 15 s: the set
    failed whole, every origin resumed at the deadline; a later try finds the host calmer."""
    monkeypatch.setattr(helper, "SET_HOLD", 1.0)
    once = tmp_path / "once"
    paths = tools(lvcreate=f'*"--name b.amsnap"*) [ -e {once} ] || {{ touch {once}; sleep 2; }};;',
                  lvs='"lvs --noheadings -o origin vg/a.amsnap") echo a;;\n'
                      '"lvs --noheadings -o origin vg-x/b.amsnap") echo b;;')
    code, out, err = helper.snapshot_set(paths, ARGS)
    assert (code, err) == (0, "") and out.count("origins held") == 2
    first = tools.acts()[:len(SUSPEND + CREATE + RESUME)]
    assert first == SUSPEND + CREATE + RESUME
    assert tools.acts()[-len(SUSPEND + CREATE + RESUME):] == SUSPEND + CREATE + RESUME
    assert tools.suspended() == []


def test_an_origin_resumed_by_another_command_fails_the_set(tools):
    """Its snapshot would hold later writes than the others': the set fails, whole."""
    paths = tools(dmsetup='"dmsetup info -c --noheadings -o suspended /dev/mapper/vg--x-b") echo Active;;',
                  lvs=A_MADE)
    code, _, err = helper.snapshot_set(paths, ARGS)
    assert code == 5 and "vg-x/b was resumed by another command" in err
    assert tools.acts() == SUSPEND + CREATE[:1] + RESUME + ["lvremove --yes vg/a.amsnap"]


def test_the_set_outlives_the_helper_killed_in_the_middle(tools, tmp_path):
    """sudo passes the Amanda user's signals on, and SIGKILLs its command on SIGALRM: the
    helper's death must not leave a VM's disks suspended. The stand-in lvcreate kills the
    helper process (not the one holding the set) in the middle of the set."""
    import subprocess
    import sys
    import time
    paths = tools(lvcreate=f'*"--name a.amsnap"*) kill -KILL "$(cat {tmp_path}/helper.pid)";;')
    script = (f"import os, sys; sys.path.insert(0, {os.getcwd()!r}); from snaplayers import helper; "
              f"helper._mapping_of = lambda d: (d[12:], '250:1'); helper._host_uses = lambda m: None; "
              f"open({str(tmp_path / 'helper.pid')!r}, 'w').write(str(os.getpid())); "
              f"helper.snapshot_set({paths!r}, {ARGS!r})")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    deadline = time.monotonic() + 20
    while tools.acts()[-2:] != RESUME and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tools.acts() == SUSPEND + CREATE + RESUME and tools.suspended() == []


@pytest.mark.parametrize("args, word", [
    (ARGS[:5], "two or more origins"),
    (["--suffix", ".amsnap", "--size", "20%ORIGIN", "vg/a", "vg/a"], "each origin once"),
    (["--size", "20%ORIGIN", "--suffix", ".amsnap", "vg/a", "vg/b"], "takes --suffix, --size"),
])
def test_a_set_that_is_not_one_is_refused_before_anything_runs(tools, args, word):
    paths = tools()
    with pytest.raises(helper.Refused, match=word):
        helper.snapshot_set(paths, args)
    assert tools.calls() == []


def test_only_a_group_of_the_groups_file_is_held(tools, tmp_path):
    """The Amanda user may ask for any set: the helper makes only those the root-owned groups
    file names, so no LV outside a group (the host's own, another VM's) is ever suspended."""
    groups = tmp_path / "groups"
    groups.write_text(f"vm1 {BASE}/lvm=vg+a,part=1 {BASE}/lvm=vg-x+b\nvm2 {BASE}/lvm=vg+c {BASE}/lvm=vg+d\n")
    os.chmod(groups, 0o644)
    sets = helper.group_origins(str(groups), BASE)
    assert sets == [frozenset({"vg/a", "vg-x/b"}), frozenset({"vg/c", "vg/d"})]
    paths = tools()
    for other in (["vg/a", "vg/c"], ["vg/a", "vg-x/b", "vg/c"], ["vg/c", "vg/x"]):
        with pytest.raises(helper.Refused, match="not the LVs of one group"):
            helper.snapshot_set(paths, ARGS[:4] + other, sets)
    assert tools.calls() == []
    assert helper.snapshot_set(paths, ARGS[:4] + ["vg-x/b", "vg/a"], sets)[0] == 0
    os.chmod(groups, 0o666)
    with pytest.raises(helper.Refused, match="writable by others"):
        helper.group_origins(str(groups), BASE)


@pytest.mark.parametrize("lvs, dmsetup, word", [
    ('echo "  swi-a-s--- a"', "", "no origin volume"),
    ('echo "  twi-aotz--"', "", "no origin volume"),
    (None, '"dmsetup info "*) echo Suspended;;', "is Suspended: another command is changing it"),
])
def test_a_snapshot_pool_or_suspended_origin_is_never_held(tools, lvs, dmsetup, word):
    cases = {"dmsetup": dmsetup, "lvs": "" if lvs is None else
             f'"lvs --noheadings -o lv_attr,origin "*) {lvs};;'}
    paths = tools(**cases)
    try:
        code, _, err = helper.snapshot_set(paths, ARGS)
    except helper.Refused as refused:
        code, err = helper.REFUSED, str(refused)
    assert code != 0 and word in err
    assert not any(c.startswith(("dmsetup suspend", "lvcreate")) for c in tools.calls())


def test_an_lv_this_host_uses_itself_is_never_held(monkeypatch):
    """Its I/O held, the host would wait on itself: lvcreate fsyncs LVM's backup into /etc."""
    st = os.stat("/")
    root = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    assert helper._host_uses(root) == "is mounted on this host"
    assert helper._host_uses("250:99999") is None


def test_the_helper_serves_the_set_as_any_command(tools, tmp_path):
    """Through `--serve`, as sudo runs it: a set of the groups file is one request and one
    answer line; another set is refused there."""
    import io
    groups = tmp_path / "groups"
    groups.write_text(f"vm1 {BASE}/lvm=vg+a {BASE}/lvm=vg-x+b\n")
    os.chmod(groups, 0o644)
    policy = {**privilege.compile_policy(BASE), "tools": tools(), "groups": str(groups)}
    out = io.StringIO()
    helper.serve(policy, iter([json.dumps(["snapshot-set", *ARGS]) + "\n",
                               json.dumps(["snapshot-set", *ARGS[:4], "vg/a", "vg/c"]) + "\n"]), out)
    (code, stdout, stderr), refused = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0 and stdout.startswith("origins held") and stderr == ""
    assert refused[0] == helper.REFUSED and "not the LVs of one group" in refused[2]
    assert tools.acts() == SUSPEND + CREATE + RESUME
