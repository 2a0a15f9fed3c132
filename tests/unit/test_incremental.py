"""A dump's GNU tar listed-incremental files dated back to its snapshot, with the real GNU tar.

tar records in its snapshot file the time it started, later than the snapshot the dump read.
A file the VM changed in between was dumped with its old content but is older than that time:
without the plugin's rewrite the next incremental skips it."""

import json
import logging
import math
import os
import shutil
import stat
import subprocess
import time

import pytest

from snaplayers import amanda, incremental, tools
from snaplayers.stack import dle_id

from simhost import SteeredSystem

BASE = "/v/amsnap"
DEV = f"{BASE}/lvm=data0+vol00,raid1,part=1"
TAR = shutil.which("tar") or "tar"       # GNU tar, as Debian's base system has it: never skipped


def tar_snapshot(tree, snapshot):
    """A level-0 dump of tree (thrown away) that writes snapshot, as amgtar runs tar."""
    subprocess.run([TAR, "--create", "--file", "/dev/null", "--listed-incremental",
                    str(snapshot), "-C", str(tree.parent), tree.name], check=True)


def next_incremental(tree, snapshot, tmp_path):
    """The members of the next incremental dump made from (a copy of) snapshot."""
    copy = tmp_path / f"copy-{time.monotonic_ns()}"
    shutil.copyfile(snapshot, copy)
    dump = subprocess.run([TAR, "--create", "--file", "-", "--listed-incremental", str(copy),
                           "-C", str(tree.parent), tree.name], check=True, capture_output=True)
    listing = subprocess.run([TAR, "--list", "--file", "-"], input=dump.stdout, check=True,
                             capture_output=True)
    return listing.stdout.decode().split()


def recorded(snapshot):
    """The time tar recorded in a format-2 snapshot file: (seconds, nanoseconds)."""
    header, rest = snapshot.read_bytes().split(b"\n", 1)
    assert header.startswith(b"GNU tar-") and header.endswith(b"-2")
    seconds, nanoseconds = rest.split(b"\0")[:2]
    return int(seconds), int(nanoseconds)


@pytest.fixture
def tree(tmp_path):
    """A guest's directory, as the snapshot shows it."""
    root = tmp_path / "guest"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    return root


def change_in_the_vm(tree):
    """A write in the VM after the snapshot and before tar starts (mtime and ctime between):
    the dump has the file's old content. tar skips a file only if both times are older than
    the time it recorded."""
    time.sleep(0.05)                    # past the file system's coarse clock
    changed = tree / "etc" / "passwd"
    changed.write_text("root:x:0:0\nalice:x:1000:1000\n")
    time.sleep(0.05)
    return changed


@pytest.fixture
def debug_log(caplog):
    caplog.set_level(logging.INFO, logger="snaplayers")
    return caplog


def test_real_tar_skips_a_file_changed_before_it_started_until_the_file_is_dated_back(
        tree, tmp_path):
    started = time.time()               # the journal's: just before the lvcreate
    changed = change_in_the_vm(tree)
    snapshot = tmp_path / "storage0vol00_0"
    tar_snapshot(tree, snapshot)
    seconds, nanoseconds = recorded(snapshot)
    assert started < changed.stat().st_mtime < seconds + nanoseconds / 1e9

    before = next_incremental(tree, snapshot, tmp_path)
    assert "guest/etc/passwd" not in before         # the data-loss gap, as GNU tar has it

    assert incremental.lower(str(snapshot), started, 10) is True
    assert recorded(snapshot) == (math.floor(started) - 10, 0)
    assert "guest/etc/passwd" in next_incremental(tree, snapshot, tmp_path)


def test_it_is_only_ever_lowered(tree, tmp_path, debug_log):
    snapshot = tmp_path / "storage0vol00_0"
    tar_snapshot(tree, snapshot)
    seconds, nanoseconds = recorded(snapshot)
    future = seconds + 5000
    os.utime(snapshot, (future, future))    # so that a later start still counts as this dump's
    original = snapshot.read_bytes()
    # a snapshot recorded as later than tar's start: nothing to lower
    assert incremental.lower(str(snapshot), seconds + 1000, 0) is False
    assert incremental.lower(str(snapshot), seconds + 1000, 999) is False
    assert snapshot.read_bytes() == original
    assert "not after" in debug_log.text
    # lowered once; the same call again (a repeated POST) leaves it as it is
    assert incremental.lower(str(snapshot), seconds - 5, 0) is True
    lowered = snapshot.read_bytes()
    assert recorded(snapshot) == (seconds - 5, 0)
    assert incremental.lower(str(snapshot), seconds - 5, 0) is False
    assert incremental.lower(str(snapshot), seconds + 3, 0) is False
    assert snapshot.read_bytes() == lowered


def test_every_other_byte_mode_and_owner_are_kept_and_the_file_is_replaced_whole(tree, tmp_path):
    (tree / "var" / "lib").mkdir(parents=True)
    (tree / "var" / "lib" / "dpkg").write_text("x" * 10000)
    listdir = tmp_path / "gnutar-lists"
    listdir.mkdir()
    snapshot = listdir / "storage0vol00_1"
    tar_snapshot(tree, snapshot)
    os.chmod(snapshot, 0o600)
    original, before = snapshot.read_bytes(), snapshot.stat()
    seconds, nanoseconds = recorded(snapshot)

    assert incremental.lower(str(snapshot), seconds - 60, 300) is True
    new, after = snapshot.read_bytes(), snapshot.stat()
    head = original.index(b"\n") + 1
    old_time = b"%d\0%d\0" % (seconds, nanoseconds)
    assert original[head:head + len(old_time)] == old_time
    assert new[:head] == original[:head]
    assert new[head:] == b"%d\0%d\0" % (seconds - 360, 0) + original[head + len(old_time):]
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino            # renamed over it, never written in place
    assert sorted(os.listdir(listdir)) == ["storage0vol00_1"]     # no temp file left


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "another uid"])
def test_anything_but_a_regular_file_of_the_caller_is_refused(tree, tmp_path, debug_log,
                                                               monkeypatch, kind):
    listdir = tmp_path / "gnutar-lists"
    listdir.mkdir()
    real = tmp_path / "elsewhere"
    tar_snapshot(tree, real)
    original = real.read_bytes()
    path = listdir / "storage0vol00_0"
    if kind == "symlink":
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        shutil.copyfile(real, path)
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    assert incremental.lower(str(path), time.time() - 100_000, 0) is False
    assert real.read_bytes() == original
    if kind == "symlink":
        assert path.is_symlink()
    elif kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    elif kind == "directory":
        assert path.is_dir()
    else:
        assert path.read_bytes() == original
    assert sorted(os.listdir(listdir)) == ["storage0vol00_0"]
    assert "refused" in debug_log.text


def test_a_missing_file_is_a_logged_no_op(tmp_path, debug_log):
    path = tmp_path / "storage0vol00_0"
    assert incremental.lower(str(path), time.time(), 300) is False
    assert not path.exists() and os.listdir(tmp_path) == []
    assert f"no listed-incremental file {path}" in debug_log.text


@pytest.mark.parametrize("content", [
    b"GNU tar-1.15.1-1\n1796180570\n",                 # format 1 (tar 1.15.90 .. 1.19)
    b"1796180570\n/srv\n",                              # format 0 (tar < 1.15.90)
    b"GNU tar-1.34-3\n1796180570\x000\x00",             # a format tar does not have yet
    b"GNU tar-1.34-2\n1796180570\x00",                  # cut short
    b"GNU tar-1.34-2\nsoon\x000\x00",
    b"",
])
def test_anything_but_format_2_is_left_alone(tmp_path, debug_log, content):
    path = tmp_path / "storage0vol00_0"
    path.write_bytes(content)
    assert incremental.lower(str(path), time.time() - 100_000, 0) is False
    assert path.read_bytes() == content
    assert "is not GNU tar's format 2" in debug_log.text


def test_a_file_this_dump_did_not_write_is_left_alone(tree, tmp_path, debug_log):
    """amgtar renames <name>_<level>.new over <name>_<level> only when tar succeeded: an older
    file under the name is a previous dump's."""
    snapshot = tmp_path / "storage0vol00_0"
    tar_snapshot(tree, snapshot)
    original = snapshot.read_bytes()
    written = snapshot.stat().st_mtime
    assert incremental.lower(str(snapshot), written + 60, 100_000) is False
    assert snapshot.read_bytes() == original
    assert "was not written by this dump" in debug_log.text


def test_amandas_file_names():
    """amgtar's and sendbackup-gnutar's g_strjoin(listdir, "/", host, sanitise_filename(disk))
    then "_<level>"; sanitise_filename turns '/', ':' and '\\' into '_' and leaves '_' alone."""
    name = incremental.listed_incremental
    assert name("/l", "storage0", "vol00", 0) == "/l/storage0vol00_0"
    assert name("/l", "storage0", "/srv/vm_data", 1) == "/l/storage0_srv_vm_data_1"
    assert name("/l", "st.example", "C:\\x/y_z", 2) == "/l/st.exampleC__x_y_z_2"
    assert name("/l", "../etc", "vol00", 0) is None


@pytest.mark.parametrize("host,levels,started,why", [
    (None, [0], 1.0e9, "no --host"),
    ("", [0], 1.0e9, "no --host"),
    ("../x", [0], 1.0e9, "makes no listed-incremental file name"),
    ("storage0", [], 1.0e9, "no --level"),
    ("storage0", [0], "yesterday", "is no time"),
    ("storage0", [0], float("nan"), "is no time"),
    ("storage0", [0], True, "is no time"),
])
def test_what_names_no_file_dates_nothing(tree, tmp_path, debug_log, host, levels, started, why):
    listdir = tmp_path / "gnutar-lists"
    listdir.mkdir()
    for name in ("storage0vol00_0", "vol00_0", "_0"):
        tar_snapshot(tree, listdir / name)
    before = {p.name: p.read_bytes() for p in listdir.iterdir()}
    assert incremental.date_back(str(listdir), host, "vol00", levels, started, 0) == []
    assert {p.name: p.read_bytes() for p in listdir.iterdir()} == before
    assert why in debug_log.text


# -- through the plugin's POST-DLE-BACKUP, as Amanda calls it --------------------------------

DISK = "/srv/vm_data:7"                     # '/', '_' and ':' as Amanda's sanitise_filename sees
FILE = "storage0_srv_vm_data_7_1"           # <host><sanitised disk>_<level>


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    system = SteeredSystem()
    system.add_dir(BASE)
    runner = system.runner()
    monkeypatch.setattr(amanda, "environment", lambda settings: (runner, system))
    monkeypatch.setattr(tools, "check", lambda needed: None)
    listdir = tmp_path / "gnutar-lists"
    listdir.mkdir()
    state = tmp_path / "state"

    def call(command, *extra):
        return amanda.main([command, "--execute-where", "client", "--config", "TB", "--host",
                            "storage0", "--disk", DISK, "--device", DEV, "--level", "1",
                            *extra, "--mount-base", BASE, "--state-dir", str(state),
                            "--log-dir", str(tmp_path / "log"), "--gnutar-listdir",
                            str(listdir)])
    call.system, call.listdir = system, listdir
    call.journal = state / f"{dle_id('TB', 'storage0', DISK)}.json"
    return call


def amgtar_dump(tree, plugin, level=1):
    """What amgtar does between PRE- and POST-DLE-BACKUP: tar writes <name>.new, renamed."""
    new = plugin.listdir / f"{FILE[:-2]}_{level}.new"
    tar_snapshot(tree, new)
    os.rename(new, plugin.listdir / f"{FILE[:-2]}_{level}")
    return plugin.listdir / f"{FILE[:-2]}_{level}"


def forge_started(plugin, started):
    """The instant the stack's snapshot was taken, as its journal records it (its lvm layer's;
    a stack that shares another DLE's snapshot has that DLE's)."""
    data = json.loads(plugin.journal.read_text())
    data["layers"][0]["taken"] = started
    plugin.journal.write_text(json.dumps(data))


def test_post_dle_backup_dates_amgtars_file_back_to_the_snapshots_instant(tree, tmp_path, plugin,
                                                                       capsys):
    assert plugin("PRE-DLE-BACKUP") == 0
    change_in_the_vm(tree)
    snapshot = amgtar_dump(tree, plugin)
    assert snapshot.name == FILE
    other_level = plugin.listdir / f"{FILE[:-2]}_0"
    shutil.copyfile(snapshot, other_level)
    untouched = other_level.read_bytes()
    assert "guest/etc/passwd" not in next_incremental(tree, snapshot, tmp_path)
    started = json.loads(plugin.journal.read_text())["layers"][0]["taken"] - 1000.5
    forge_started(plugin, started)          # what POST reads is the journal's, not the clock

    assert plugin("POST-DLE-BACKUP") == 0       # Amanda 3.5 sends neither --success nor --failed
    assert capsys.readouterr() == (f"PROPERTY directory {DEV}\n", "")
    assert recorded(snapshot) == (math.floor(started) - 300, 0)
    assert "guest/etc/passwd" in next_incremental(tree, snapshot, tmp_path)
    assert other_level.read_bytes() == untouched            # not a level this call named
    assert not plugin.journal.exists() and plugin.system.mounts() == []
    assert sorted(os.listdir(plugin.listdir)) == sorted([FILE, other_level.name])


@pytest.mark.parametrize("failure", ["--failed", "overflow"])
def test_a_failed_dump_leaves_the_file_as_it_is(tree, plugin, capsys, failure):
    assert plugin("PRE-DLE-BACKUP") == 0
    snapshot = amgtar_dump(tree, plugin)
    forge_started(plugin, recorded(snapshot)[0] - 1000)
    original = snapshot.read_bytes()
    if failure == "overflow":
        plugin.system.lvs["data0/vol00.amsnap"]["lv_attr"] = "swi-I-s---"
        assert plugin("POST-DLE-BACKUP") == 4
    else:
        assert plugin("POST-DLE-BACKUP", "--failed") == 0
    assert snapshot.read_bytes() == original
    assert plugin.system.mounts() == [] and not plugin.journal.exists()


def test_success_dates_it_back_and_a_dump_without_tar_files_is_a_no_op(tree, plugin, capsys):
    assert plugin("PRE-DLE-BACKUP") == 0
    assert plugin("POST-DLE-BACKUP", "--success") == 0          # nothing under the name
    assert os.listdir(plugin.listdir) == []
    assert plugin("PRE-DLE-BACKUP") == 0
    snapshot = amgtar_dump(tree, plugin)
    started = recorded(snapshot)[0] - 1000.5
    forge_started(plugin, started)
    assert plugin("POST-DLE-BACKUP", "--success") == 0
    assert recorded(snapshot) == (math.floor(started) - 300, 0)
    log = "".join(p.read_text() for p in (plugin.listdir.parent / "log").iterdir())
    assert f"no listed-incremental file {plugin.listdir}/{FILE} " in log
    assert f"listed-incremental {snapshot} dated {math.floor(started) - 300} " in log
