"""The Script API: support, argv handling, stdout/stderr conventions, hostile input."""

import os
import re
import subprocess
import sys

import pytest

from snaplayers import amanda, cli, tools
from snaplayers import log as plugin_log
from snaplayers.device import LAYERS, parse
from snaplayers.props import PROPERTIES, Settings, settings_from

from simhost import SteeredSystem

BASE = "/v/amsnap"
DEV = f"{BASE}/lvm=data0+vol00,raid1,part=1"


def dle(command, device=DEV, **extra):
    argv = [command, "--execute-where", "client", "--config", "TB", "--host", "storage0",
            "--disk", "vol00", "--device", device]
    for k, v in extra.items():
        argv += [f"--{k}", v]
    return argv


def test_support_prints_capabilities_and_nothing_on_stderr(capsys):
    assert amanda.main(["support"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for line in ("CONFIG YES", "HOST YES", "DISK YES", "MESSAGE-LINE YES", "EXECUTE-WHERE YES"):
        assert line in out.splitlines()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_commands_grammar_and_properties(capsys, flag):
    assert amanda.main([flag]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("usage: script-snaplayers COMMAND")
    # every command the plugin answers, and no other
    listed = set(re.findall(r"\b(?:PRE|POST|INTER)-[A-Z-]+[A-Z]\b", out))
    assert listed == {*amanda.SETUP, *amanda.TEARDOWN, *amanda.NOOP} and "\n  support\n" in out
    # the grammar, with every layer the parser accepts: one device holding each kind parses
    assert "<mount_base>/(lvm=<vg>+<lv>|raid1|part=<n>|vg=<vg>+<lv>|luks=<key>)[,...]" in out
    spec = parse(f"{BASE}/lvm=a+b,raid1,part=1,vg=c+d,luks=k", BASE)
    assert {type(layer) for layer in spec.layers} == set(LAYERS)
    for layer in LAYERS:
        assert f"\n  {layer.syntax}\n      " in out
    for example in re.findall(r"/v/amsnap/\S+", out):
        parse(example, BASE)
    # every property with its default: the printed defaults, read back, are Settings' own
    printed = dict(re.findall(r"^  ([a-z-]+) \((required|default \S+)\)$", out, re.M))
    assert set(printed) == set(PROPERTIES) and printed["mount-base"] == "required"
    defaults = {name: shown[len("default "):] for name, shown in printed.items()
                if name != "mount-base"}
    assert settings_from({"mount-base": BASE, **defaults}) == Settings(mount_base=BASE)
    assert "size (default 20%ORIGIN)" in out and "recovery (default YES)" in out


def test_help_runs_and_writes_nothing(plugin, capsys, monkeypatch):
    def refused(*args):
        raise AssertionError("--help reached the machine")
    monkeypatch.setattr(amanda, "environment", refused)
    monkeypatch.setattr(plugin_log, "start", refused)
    assert plugin("--help", *dle("PRE-DLE-BACKUP")[1:]) == 0
    assert capsys.readouterr().out.startswith("usage: ")
    assert plugin.runner.executed == []
    assert not plugin.state.exists() and not plugin.logs.exists()


def test_the_operator_commands_help_points_to_the_plugins(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    assert "script-snaplayers --help" in " ".join(capsys.readouterr().out.split())


def test_support_imports_nothing_but_the_entry():
    code = ("import sys; from snaplayers import amanda; amanda.main(['support']); "
            "print(sorted(m for m in sys.modules if m.startswith('snaplayers')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "['snaplayers', 'snaplayers.amanda']"


def test_backup_cycle_prints_the_directory_property(plugin, capsys):
    assert plugin(*dle("PRE-DLE-BACKUP", timestamp="20261126022921", level="0")) == 0
    out, err = capsys.readouterr()
    assert out == f"PROPERTY directory {DEV}\n" and err == ""
    assert plugin.system.mounts()[0]["mountpoint"] == DEV
    assert plugin(*dle("POST-DLE-BACKUP", level="0"), "--success") == 0
    assert plugin.system.mounts() == [] and plugin.system.arrays == {}


def test_amcheck_prints_nothing_when_all_is_well(plugin, capsys):
    assert plugin(*dle("PRE-DLE-AMCHECK")) == 0
    assert plugin(*dle("POST-DLE-AMCHECK")) == 0
    assert capsys.readouterr() == ("", "")
    assert plugin.system.mounts() == []


def test_lower_case_commands_and_underscore_options(plugin, capsys):
    argv = ["pre-dle-estimate", "--execute_where", "client", "--disk", "vol00", "--device", DEV,
            "--Mount_Base", BASE, "--state_dir", str(plugin.state), "--log_dir", str(plugin.logs),
            "--stale_seconds", "60", "--level", "0", "--level", "1"]
    assert amanda.main(argv) == 0
    assert capsys.readouterr().out == f"PROPERTY directory {DEV}\n"
    assert amanda.main(["post-dle-estimate", "--disk", "vol00", "--device", DEV, "--mount-base",
                        BASE, "--state-dir", str(plugin.state), "--log-dir", str(plugin.logs)]) == 0


@pytest.mark.parametrize("command", ["PRE-HOST-BACKUP", "POST-HOST-AMCHECK", "PRE-RECOVER",
                                     "INTER-LEVEL-RECOVER", "post-host-estimate"])
def test_other_commands_are_clean_no_ops(plugin, capsys, command):
    assert plugin(command, "--execute-where", "client") == 0
    assert capsys.readouterr() == ("", "") and plugin.runner.executed == []


def test_a_failed_set_up_is_one_stderr_line_and_non_zero(plugin, capsys):
    plugin.system.members["/dev/mapper/data0-vol00.amsnap"] = "raid0"
    assert plugin(*dle("PRE-DLE-BACKUP")) != 0
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "raid0" in err
    assert plugin.system.mounts() == [] and not [n for n in plugin.system.lvs if "amsnap" in n]


def test_overflow_at_post_backup_fails_the_dump(plugin, capsys):
    assert plugin(*dle("PRE-DLE-BACKUP")) == 0
    plugin.system.lvs["data0/vol00.amsnap"]["lv_attr"] = "swi-I-s---"
    assert plugin(*dle("POST-DLE-BACKUP")) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "overflowed" in err
    # the POST call's own debug log ends with the same line, timestamped like Amanda's
    last = sorted(os.listdir(plugin.logs))[-1]
    tail = (plugin.logs / last).read_text().splitlines()[-1]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ snaplayers: failed: .*overflowed", tail)


def test_a_mount_gone_before_post_backup_fails_the_dump(plugin, capsys):
    assert plugin(*dle("PRE-DLE-BACKUP")) == 0
    capsys.readouterr()
    plugin.system.mount_rows = []           # unmounted behind our back while Amanda read it
    assert plugin(*dle("POST-DLE-BACKUP")) == 4
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "no longer mounted" in err
    assert not [n for n in plugin.system.lvs if "amsnap" in n]


@pytest.mark.parametrize("command", ["POST-DLE-AMCHECK", "POST-DLE-ESTIMATE"])
def test_post_without_a_stack_is_a_no_op(plugin, capsys, command):
    assert plugin(*dle(command)) == 0
    assert capsys.readouterr() == ("", "")


def test_a_dump_that_ends_with_no_stack_up_fails(plugin, capsys):
    """Torn down meanwhile (by another call, an operator's cleanup --force): the dump may have
    read the bare mount point, or half of it; Amanda must not keep it."""
    assert plugin(*dle("PRE-DLE-BACKUP")) == 0
    assert plugin(*dle("POST-DLE-BACKUP")) == 0         # the other call
    capsys.readouterr()
    assert plugin(*dle("POST-DLE-BACKUP")) == 4
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "no stack of DLE vol00 was up when its dump ended" in err
    # a dump Amanda already failed needs no second reason
    assert plugin(*dle("POST-DLE-BACKUP"), "--failed") == 0
    assert capsys.readouterr() == ("", "")


def test_debug_log_records_commands_and_exit_status(plugin):
    assert plugin(*dle("PRE-DLE-BACKUP")) == 0
    (log,) = os.listdir(plugin.logs)
    assert log.startswith("script-snaplayers.") and log.endswith(".debug")
    text = (plugin.logs / log).read_text()
    assert "+ /usr/sbin/lvcreate --snapshot" in text and "exit 0 in" in text
    assert "  stdout: " not in text


def test_the_debug_property_adds_each_commands_stdout(plugin):
    assert plugin(*dle("PRE-DLE-BACKUP", debug="yes")) == 0
    (log,) = os.listdir(plugin.logs)
    assert "  stdout:   LVM2_LV_NAME='vol00'" in (plugin.logs / log).read_text().replace("\t", " ")


# Hostile and malformed input: one line, non-zero, no command, nothing written.
HOSTILE_DEVICES = [
    f"{BASE}/../../etc/lvm=a+b", f"{BASE}/lvm=a+b/../../x", "/etc/lvm=a+b", f"{BASE}/lvm=../..+b",
    f"{BASE}/lvm=a+b;rm -rf /", f"{BASE}/lvm=a+b && id", f"{BASE}/lvm=a+$(id)", f"{BASE}/lvm=a+`id`",
    f"{BASE}/lvm=a+b|sh", f"{BASE}/lvm=a+b>x", f"{BASE}/lvm=a+b'", f'{BASE}/lvm=a+b"', f"{BASE}/lvm=a+b\\",
    f"{BASE}/lvm=a+b*", f"{BASE}/lvm=a+b?", f"{BASE}/lvm=a+b[0]", f"{BASE}/lvm=a+b{{x}}", f"{BASE}/lvm=a+b~",
    f"{BASE}/lvm=a+b#", f"{BASE}/lvm=a+b!", f"{BASE}/lvm=a+b%", f"{BASE}/lvm=a+b&", f"{BASE}/lvm=a+b b",
    f"{BASE}/lvm=a+b\tb", f"{BASE}/lvm=a+b\nPROPERTY directory /", f"{BASE}/lvm=a+b\r", f"{BASE}/lvm=a+b\x00",
    f"{BASE}/lvm=-a+b", f"{BASE}/lvm=a+-b", f"{BASE}/lvm=a+--yes", "--device", "-rf", f"{BASE}/--help",
    f"{BASE}/lvm=a+b,part=-1", f"{BASE}/lvm=a+é", f"{BASE}/lvm=a+b\u202e", f"{BASE}/lvm=ａ+b",
    f"{BASE}/lvm=a+b\u0301", f"{BASE}/lvm=a+" + "b" * 5000, f"{BASE}/lvm=a+b" + ",raid1" * 1000,
    BASE + "/" * 300 + "lvm=a+b", f"{BASE}/raid1", f"{BASE}/part=1", f"{BASE}/part=1,lvm=a+b",
    f"{BASE}/raid1,lvm=a+b", f"{BASE}/lvm=a+b,lvm=c+d", f"{BASE}/lvm=a+b,raid1,raid1",
    f"{BASE}/lvm=a+b,part=1,part=1", f"{BASE}/lvm=a+b,part=1,raid1,part=2,raid1",
    f"{BASE}/lvm=a+b,part=129", f"{BASE}/lvm=a+b,part=4294967297", f"{BASE}/lvm=a+b,part=1e3",
    f"{BASE}/lvm=a+b,part=0x10", f"{BASE}/lvm=a+b,part= 1", f"{BASE}/lvm=a+b,part=1.0",
    f"{BASE}/lvm=a+b,,part=1", f"{BASE}/,lvm=a+b", f"{BASE}/lvm=a+b,", f"{BASE}/lvm=", f"{BASE}/lvm=+",
    f"{BASE}/lvm=a+b,raid", f"{BASE}/lvm=a+b,RAID1", f"{BASE}/LVM=a+b", f"{BASE}/lvm=a+b,raid1=1",
    f"{BASE}/lvm=a+b,luks=-x", f"{BASE}/lvm=a+b,vg=c", f"{BASE}/lvm=a+b,luks=.key", f"{BASE}/lvm=a+b,vg=c+d+e",
    f"{BASE}/lvm=a+b,vg=c+d,part=1,vg=e+f", f"{BASE}/lvm=a+b,luks=x;id", f"{BASE}/lvm=a+b,luks=", f"{BASE}/lvm=a+b,mount", f"{BASE}/lvm=a+b_rimage_0",
    f"{BASE}/lvm=a+snapshot1", f"{BASE}/lvm=a+pvmove0", f"{BASE}/lvm=a+b_tmeta", f"{BASE}/lvm=.+b",
    f"{BASE}/lvm=a+..", f"{BASE}/lvm=a+vol00.amsnap", f"{BASE}/lvm=data0+live.amsnap",
    "", "/", BASE, f"{BASE}/", f"{BASE}//lvm=a+b", f"{BASE}/./lvm=a+b", "lvm=a+b", "v/amsnap/lvm=a+b",
    "/v/amsnap2/lvm=a+b", "/v/ams/lvm=a+b", "/v/lvm=a+b",
]
HOSTILE_PROPERTIES = [
    ("mount-base", "/"), ("mount-base", "relative"), ("mount-base", "/v/../etc"), ("mount-base", "/v/amsnap/"),
    ("mount-base", "/v//amsnap"), ("mount-base", "/v/ams nap"), ("mount-base", "-/v"), ("mount-base", "/v;id"),
    ("size", "-1"), ("size", "0"), ("size", "1Z"), ("size", "100%VG"), ("size", "101%ORIGIN"),
    ("size", "--yes"), ("size", "1G --force"), ("size", "$(id)"), ("size", "50M;id"),
    ("snap-suffix", ""), ("snap-suffix", "x"), ("snap-suffix", "/x"), ("snap-suffix", " .snap"),
    ("snap-suffix", ".a/b"), ("snap-suffix", ".a b"), ("snap-suffix", "_mlog"), ("snap-suffix", "." + "a" * 40),
    ("stale-seconds", "-5"), ("stale-seconds", "1e9"), ("stale-seconds", "soon"),
    ("state-dir", "relative"), ("state-dir", "/var/../tmp"), ("log-dir", "/tmp/$(id)"),
    ("key-dir", "keys"), ("key-dir", "/etc/../root"), ("key-dir", "/etc/keys;id"), ("key-dir", "/"),
    ("sudo", "maybe"), ("recovery", "perhaps"), ("debug", "2"),
    ("incremental-margin", "-300"), ("incremental-margin", "5m"), ("incremental-margin", "1e3"),
    ("incremental-margin", ""), ("incremental-margin", "1234567890"),
    ("gnutar-listdir", "gnutar-lists"), ("gnutar-listdir", "/var/lib/amanda/../gnutar-lists"),
    ("gnutar-listdir", "/var/lib/amanda/gnutar-lists/"), ("gnutar-listdir", "/var/lib/gnutar lists"),
    ("gnutar-listdir", "/tmp/$(id)"), ("gnutar-listdir", "/"),
    ("unknown-prop", "x"), ("execute-where", "server"),
]


def _hostile_argv(plugin, case):
    kind, value = case
    state, logs = str(plugin.state), str(plugin.logs)
    base = ["--state-dir", state, "--log-dir", logs]
    if kind == "device":
        return dle("PRE-DLE-BACKUP", device=value) + ["--mount-base", BASE] + base
    props = {"mount-base": BASE, "state-dir": state, "log-dir": logs, value[0]: value[1]}
    if value[0] == "execute-where":
        argv = ["PRE-DLE-BACKUP", "--execute-where", "server", "--device", DEV]
        props.pop("execute-where")
    else:
        argv = dle("PRE-DLE-BACKUP")
    for k, v in props.items():
        argv += [f"--{k}", v]
    return argv


CASES = [("device", d) for d in HOSTILE_DEVICES] + [("property", p) for p in HOSTILE_PROPERTIES]
EXECUTED = []       # commands each hostile input ran: the figures table sums it


def named(case, err):
    """The one line names what was wrong: the device, its offending token or the property."""
    kind, value = case
    if kind == "property":
        return f"{value[0]} '{value[1][:30]}" in err or f"--{value[0]}" in err
    if not value:
        return "missing --device" in err
    rest = value[len(BASE) + 1:] if value.startswith(BASE + "/") else value
    shown = [ascii(value)[1:-1][:30], ascii(rest)[1:-1][:30].rstrip("/")]
    shown += [t.split("+")[-1] for t in rest.split(",") if t]      # the token or the name in it
    return any(f"{q}{s}" in err or f"{s}{q}" in err for s in shown if s for q in "'\"")


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_hostile_input_gets_one_line_and_touches_nothing(plugin, capsys, case):
    rc = amanda.main(_hostile_argv(plugin, case))
    out, err = capsys.readouterr()
    EXECUTED.append(len(plugin.runner.executed))
    assert rc != 0
    assert out == "" and err.count("\n") == 1 and err.startswith("snaplayers: ")
    assert named(case, err), err
    assert plugin.runner.executed == []
    assert not plugin.state.exists() and not plugin.logs.exists()


@pytest.mark.parametrize("argv,word", [
    ([], "no command"),
    (["PRE-DLE-BACKUP", "--device"], "needs a value"),
    (["PRE-DLE-BACKUP", "stray"], "unexpected argument"),
    (["PRE-DLE-BACKUP", "-x", "1"], "unexpected argument"),
    (["PRE-DLE-BACKUP", "--level", "x"], "--level"),
    (["PRE-DLE-BACKUP", "--mount-base", BASE], "missing --device"),
    (["PRE-DLE-BACKUP", "--device", DEV], "mount-base"),
    (["FROB", "--device", DEV], "unknown command"),
    (["PRE-DLE-BACKUP; id"], "bad command"),
])
def test_malformed_calls(plugin, capsys, argv, word):
    assert amanda.main(argv) != 0
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and word in err
    assert plugin.runner.executed == []


def test_missing_tools_are_reported_together_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tools, "SAFE_PATH", str(tmp_path))
    monkeypatch.setattr(tools, "TOOLS", {k: (str(tmp_path / k), v[1]) for k, v in tools.TOOLS.items()})
    rc = amanda.main(dle("PRE-DLE-BACKUP") + ["--mount-base", BASE, "--state-dir",
                                              str(tmp_path / "s"), "--log-dir", str(tmp_path / "l"),
                                              "--sudo", "no"])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1
    for tool in ("lvcreate", "mdadm", "dmsetup", "blkid", "mount"):
        assert tool in err
    assert not (tmp_path / "s").exists()


def test_installed_console_script_answers_support():
    exe = os.path.join(os.path.dirname(sys.executable), "script-snaplayers")
    proc = subprocess.run([exe, "support"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "" and "EXECUTE-WHERE YES" in proc.stdout


def test_installed_console_script_answers_help():
    exe = os.path.join(os.path.dirname(sys.executable), "script-snaplayers")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "" and "mount-base (required)" in proc.stdout


@pytest.mark.parametrize("made", [True, False], ids=["made", "not made yet"])
def test_as_root_a_state_dir_another_user_can_write_is_refused_before_anything(plugin, capsys, monkeypatch, made):
    """Root's journal and locks there would follow symlinks the Amanda user plants; where the
    state dir is not made yet, that user could make it first."""
    where = plugin.state if made else plugin.state.parent
    plugin.state.mkdir()
    where.chmod(0o777)
    if not made:
        plugin.state.rmdir()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    try:
        assert plugin(*dle("PRE-DLE-BACKUP")) != 0
    finally:
        where.chmod(0o700)
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("snaplayers: state-dir ")
    # as root: the mode is what is wrong; as another user, the owner already
    assert "not root's alone" in err and (f"{where} is writable by group or others" in err
                                          or f"{where} is owned by uid" in err), err
    assert plugin.runner.executed == [] and not plugin.logs.exists()
    assert (list(plugin.state.iterdir()) == []) if made else not plugin.state.exists()


def test_as_root_a_log_dir_another_user_can_write_is_refused_before_anything(plugin, capsys, monkeypatch):
    """The debug log is opened for appending: through a planted symlink, root would write anywhere."""
    plugin.logs.mkdir()
    plugin.logs.chmod(0o777)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    try:
        assert plugin(*dle("PRE-DLE-BACKUP")) == 2
    finally:
        plugin.logs.chmod(0o700)
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"snaplayers: log-dir {plugin.logs} is not root's alone")
    assert plugin.runner.executed == [] and list(plugin.logs.iterdir()) == [] and not plugin.state.exists()
