"""The privileged path: the helper's compiled policy admits every argv the plugin plans and
nothing from the red-team list; its guards look at the disk; the sudoers line is one command."""

import itertools
import os
import shutil
import subprocess
import sys

import pytest

from snaplayers import helper, privilege, simulate, tools
from snaplayers.device import parse
from snaplayers.errors import BadInput
from snaplayers.props import Settings

import redteam
from simhost import SteeredSystem

BASE = "/v/amsnap"
POLICY = privilege.compile_policy(BASE)
STACKS = ["lvm=data0+vol00,raid1,part=1", "lvm=data0+vol01,part=2", "lvm=data0+vol02",
          "lvm=data0+vol03,raid1", "lvm=data-0+vol_04.x,part=2,raid1,part=1",
          "lvm=vg+lv,part=128,raid1", "lvm=data0+vol05,raid1,part=3,vg=data0+root",
          "lvm=data0+vol06,raid1,part=1,luks=vm6", "lvm=d.x+v.w,vg=g.1+lv.2,luks=k.1",
          "lvm=data0+vol08,luks=k,vg=vg-0+lv-1,part=2"]


def planned_argv(layers, tmp_path, fstype="ext4", size="20%ORIGIN", thin=False, recovery=True,
                 udev=True):
    """What `snaplayers plan` prints, with the simulated host's values where it prints placeholders."""
    system = SteeredSystem(fstype=fstype, thin=thin)
    system.udev = udev                  # without udev, a stopped array's link is removed too
    settings = Settings(mount_base=BASE, state_dir=str(tmp_path), log_dir=str(tmp_path), size=size,
                        recovery=recovery)
    done = simulate.plan(parse(f"{BASE}/{layers}", BASE), settings, system, "c", "h", layers)
    return done.setup + done.teardown


def bare(argv):
    return [os.path.basename(argv[0]), *argv[1:]]


def test_every_planned_command_is_admitted(tmp_path):
    combos = itertools.product(STACKS, ["ext4", "xfs", "ext2", "ext3"], ["20%ORIGIN", "1.5G"],
                               [False, True], [True, False], [True, False])
    argvs = [bare(a) for i, c in enumerate(combos) for a in planned_argv(*c[:1], tmp_path / str(i), *c[1:])]
    assert len(argvs) > 1000
    # a group's snapshot-set, of 2 to 8 LVs (test_group shows the plugin runs each of these)
    argvs += [["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", *[f"d/v{i}" for i in range(n)]]
              for n in range(2, 9)]
    assert [a for a in argvs if not privilege.admitted(a, POLICY)] == []
    # and every template is used by some plan: none admits what the plugin never runs
    used = {tuple(r) for r in POLICY["rules"]
            if any(privilege.admitted(a, {**POLICY, "rules": [r]}) for a in argvs)}
    assert used == {tuple(r) for r in POLICY["rules"]}


RED = redteam.argvs()


def test_the_red_team_list_is_long_and_says_something():
    assert len(RED) >= 150 and len({tuple(a) for a in RED}) == len(RED)
    # the list is not refused for want of a tool name: most name a tool the helper knows
    assert sum(a[0] in POLICY["tools"] for a in RED) > 120


@pytest.mark.parametrize("argv", RED, ids=[" ".join(a)[:70] for a in RED])
def test_the_helper_refuses_every_red_team_argv(argv):
    with pytest.raises(helper.Refused):
        helper.admit(POLICY, argv, guard=False)


def test_the_red_team_forms_are_the_plugins_own_before_they_are_made_hostile():
    assert all(privilege.admitted(a, POLICY) for a in redteam.own())


def test_a_refusal_names_the_argument():
    with pytest.raises(helper.Refused, match=r"argument 3 '/dev/sda' is not admitted"):
        helper.admit(POLICY, ["mdadm", "--examine", "--export", "/dev/sda"], guard=False)
    with pytest.raises(helper.Refused, match=r"'sh' is not one snaplayers runs"):
        helper.admit(POLICY, ["sh", "-c", "id"], guard=False)


def test_lvm_config_is_admitted_only_for_one_of_our_devices():
    snap = "/dev/mapper/data0-vol00.amsnap"
    form = ["lvchange", "--config", helper.lvm_config(snap), "--activate", "y", "snaplayers_0123456789ab/root"]
    assert privilege.admitted(form, POLICY)
    for device in ("/dev/mapper/data0-vol00", "/dev/sda", "/dev/mapper/data0-vol00-real"):
        assert not privilege.admitted([*form[:2], helper.lvm_config(device), *form[3:]], POLICY)
    tampered = helper.lvm_config(snap).replace("backup/backup=0", "backup/backup=1")
    assert not privilege.admitted([*form[:2], tampered, *form[3:]], POLICY)


@pytest.fixture
def base(tmp_path):
    """A mount base as `snaplayers install` makes it: root's, not writable by others."""
    if os.geteuid() != 0:
        pytest.fail("the guard tests need root (make test runs as root): they chown to root")
    b = tmp_path / "amsnap"
    b.mkdir(mode=0o750)
    os.chown(tmp_path, 0, 0)
    os.chmod(tmp_path, 0o755)
    return b


def test_the_helper_mounts_only_on_a_plain_directory_of_roots_in_a_safe_base(base, tmp_path):
    policy = privilege.compile_policy(str(base))
    mp = base / "lvm=a+b"
    umount = ["umount", str(mp)]
    mkdir = ["mkdir", str(mp)]
    assert helper.admit(policy, mkdir) == tools.path("mkdir")
    mp.symlink_to("/etc")                                   # planted: mount would follow it
    with pytest.raises(helper.Refused, match="symlink"):
        helper.admit(policy, umount)
    with pytest.raises(helper.Refused, match="exists"):
        helper.admit(policy, mkdir)
    mp.unlink()
    mp.mkdir()
    with pytest.raises(helper.Refused, match="not a mount point"):
        helper.admit(policy, umount)
    assert helper.admit(policy, ["rmdir", str(mp)]) == tools.path("rmdir")
    os.chown(mp, 34, 34)                                    # a directory the Amanda user made
    with pytest.raises(helper.Refused, match="root's"):
        helper.admit(policy, ["rmdir", str(mp)])
    os.chmod(base, 0o770)                                   # the base writable by its group
    with pytest.raises(helper.Refused, match="writable by group"):
        helper.admit(policy, mkdir)
    os.chmod(base, 0o750)
    os.chown(base, 34, 34)                                  # the base the Amanda user's
    with pytest.raises(helper.Refused, match="owned by uid 34"):
        helper.admit(policy, mkdir)


def test_a_sticky_ancestor_is_safe_but_a_sticky_base_is_not(base):
    os.chmod(base.parent, 0o1777)
    assert helper.unsafe_dir(str(base)) is None
    os.chmod(base, 0o1777)
    assert "writable" in helper.unsafe_dir(str(base))


def test_the_installed_helper_runs_as_a_script_on_every_python_here(tmp_path):
    """The file `snaplayers install` writes: the policy in place, --check answers, nothing runs."""
    path = tmp_path / "helper"
    path.write_text(privilege.helper_source(POLICY))
    found = (shutil.which("python3.9"), "/usr/bin/python3")
    pythons = {sys.executable, *(p for p in found if p and subprocess.run(
        [p, "-c", "pass"], capture_output=True).returncode == 0)}
    for python in sorted(pythons):
        ok = subprocess.run([python, "-IS", str(path), "--check", *redteam.own()[0]],
                            capture_output=True, text=True)
        assert (ok.returncode, ok.stdout) == (0, "admitted\n"), (python, ok.stderr)
        no = subprocess.run([python, "-IS", str(path), "--check", "lvremove", "--yes", "data0/vol00"],
                            capture_output=True, text=True)
        assert no.returncode == helper.REFUSED and no.stdout == ""
        assert no.stderr.count("\n") == 1 and "'data0/vol00'" in no.stderr


def test_sudoers_is_one_command_and_visudo_accepts_it(tmp_path):
    text = privilege.sudoers("backup", "/usr/local/libexec/snaplayers/helper")
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rules == ["Defaults!/usr/local/libexec/snaplayers/helper !requiretty, !use_pty, env_reset",
                     "backup ALL=(root) NOPASSWD: /usr/local/libexec/snaplayers/helper"]
    visudo = shutil.which("visudo", path=tools.SAFE_PATH)
    assert visudo, "visudo is missing: `make deps` installs sudo"
    f = tmp_path / "sudoers"
    f.write_text(text)
    proc = subprocess.run([visudo, "-cf", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_policy_input_is_rejected():
    for args in (("/v/../x", ".amsnap"), (BASE, "amsnap"), (BASE, ".a b"), (BASE, "-real"),
                 (BASE, "_tdata"), (BASE, ".x_tdata"), (BASE, ".cow-x"), (BASE, ".x_rimage_0")):
        with pytest.raises(BadInput):
            privilege.compile_policy(*args)
    with pytest.raises(BadInput):
        privilege.sudoers("root;", "/usr/local/libexec/snaplayers/helper")


def _luks2(path, tokens):
    import json
    area = json.dumps({"keyslots": {}, "tokens": tokens, "segments": {}}).encode()
    head = b"LUKS\xba\xbe" + (2).to_bytes(2, "big") + (16384).to_bytes(8, "big")
    path.write_bytes(head.ljust(4096, b"\0") + area.ljust(16384 - 4096, b"\0"))
    return str(path)


def test_a_luks2_header_with_tokens_is_not_opened(tmp_path):
    """cryptsetup tries tokens (TPM, FIDO, keyring) before the key file: a snapshot of a host's
    LUKS2 volume with such a token would open without a key of ours."""
    key = "/etc/snaplayers/keys/k.key"
    plain = _luks2(tmp_path / "plain", {})
    helper._guard_luks(["open", "--type", "luks", "--key-file", key, plain, "snaplayers-0123456789ab-3c"])
    tpm = _luks2(tmp_path / "tpm", {"0": {"type": "systemd-tpm2", "keyslots": ["1"]}})
    with pytest.raises(helper.Refused, match="tokens"):
        helper._guard_luks(["open", "--type", "luks", "--key-file", key, tpm, "snaplayers-0123456789ab-3c"])


def test_every_pattern_refuses_a_leading_dash_a_newline_and_non_ascii():
    for rule in POLICY["rules"]:
        for i, pattern in enumerate(rule[1:]):
            if pattern.startswith("=lvmconf:"):
                continue
            for bad in ("-x", "x\n", "\u0661", "--config=x"):
                assert not helper._element_matches(pattern, bad), (rule[0], i, bad)
    assert "activation/monitoring=0" in helper.lvm_config("/dev/mapper/snaplayers-0123456789ab-1p1")


def test_one_helper_serves_a_whole_call_and_checks_every_argv_it_is_sent(tmp_path, monkeypatch):
    """The runner starts `sudo -n helper --serve` once and sends it each argv: admitted ones run
    (here lvs is /bin/echo), refused ones come back as exit 126 with one line, whatever the
    layer accepts; closing its input ends it."""
    from snaplayers import run
    from snaplayers.errors import CommandFailed
    policy = {**POLICY, "tools": {**POLICY["tools"], "lvs": "/bin/echo"}}
    path = tmp_path / "helper"
    path.write_text(privilege.helper_source(policy).replace("#!/usr/bin/python3 -IS", f"#!{sys.executable} -IS"))
    path.chmod(0o755)
    fake_sudo = tmp_path / "sudo"           # sudo -n HELPER ARGS: run HELPER ARGS as we are
    fake_sudo.write_text("#!/bin/sh\nshift\nexec \"$@\"\n")
    fake_sudo.chmod(0o755)
    real = tools.path
    monkeypatch.setattr(tools, "path", lambda t: str(fake_sudo) if t == "sudo" else real(t))
    runner = run.Runner(sudo="yes")
    runner.helper = str(path)
    lvs = ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
           "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size", "data0/vol00"]
    assert runner.run(lvs).stdout == " ".join(lvs[1:]) + "\n"
    assert runner.run(lvs, accept=(0, 5)).returncode == 0          # the same helper again
    served = runner._served
    with pytest.raises(CommandFailed, match="refused: .*'data0/vol00' is not admitted"):
        runner.run(["lvremove", "--yes", "data0/vol00"], accept=(0, 126))
    assert runner._served is served and served.poll() is None       # one process for all
    runner.close()
    assert served.poll() == 0


def test_the_helper_serves_json_lists_of_strings_only():
    import io
    out = io.StringIO()
    helper.serve(POLICY, ['"lvs"\n', "[1, 2]\n", "not json\n", '["lvs", "a\\u0000b"]\n'], out)
    replies = [__import__("json").loads(line) for line in out.getvalue().splitlines()]
    assert [r[0] for r in replies] == [helper.REFUSED] * 4 and all("refused" in r[2] for r in replies)


def test_lvremove_is_admitted_for_a_snapshot_only(tmp_path):
    """An LV of the host's merely named like a snapshot (`<lv>.amsnap`) is its owner's data:
    the helper asks LVM, as root, whether it has an origin before it lets lvremove run."""
    lvs = tmp_path / "lvs"
    policy = {**POLICY, "tools": {**POLICY["tools"], "lvs": str(lvs)}}
    argv = ["lvremove", "--yes", "data0/vol00.amsnap"]
    for script, admitted in (("echo '  vol00'", True),            # a snapshot of vol00
                             ("echo '   '", False),              # a plain LV, no origin
                             ("exit 5", True),                   # not there: lvremove fails itself
                             ("exit 3", False)):                 # LVM cannot say
        lvs.write_text(f"#!/bin/sh\n[ \"$*\" = '--noheadings -o origin data0/vol00.amsnap' ] || exit 9\n{script}\n")
        lvs.chmod(0o755)
        if admitted:
            assert helper.admit(policy, argv) == POLICY["tools"]["lvremove"]
        else:
            with pytest.raises(helper.Refused, match="not a snapshot|is unknown"):
                helper.admit(policy, argv)
