"""The generated sudoers: valid for visudo, admits every planned command, and nothing else."""

import itertools
import shutil
import subprocess

import pytest

from snaplayers import sudoers, tools
from snaplayers.device import parse
from snaplayers.layers import Context
from snaplayers.props import Settings
from snaplayers.simulate import SimulatedSystem
from snaplayers.stack import Stack, dle_id

BASE = "/v/amsnap"
STACKS = ["lvm=data0+vol00,raid1,part=1", "lvm=data0+vol01,part=2", "lvm=data0+vol02",
          "lvm=data0+vol03,raid1", "lvm=data-0+vol_04.x,part=2,raid1,part=1",
          "lvm=vg+lv,part=128,raid1", "lvm=data0+vol05,raid1,part=3,vg=data0+root",
          "lvm=data0+vol06,raid1,part=1,luks=vm6", "lvm=d.x+v.w,vg=g.1+lv.2,luks=k.1",
          "lvm=data0+vol08,luks=k,vg=vg-0+lv-1,part=2"]


def planned_argv(layers, tmp_path, fstype="ext4", size="20%ORIGIN", thin=False, recovery=True):
    system = SimulatedSystem(fstype=fstype)
    system.add_dir(BASE)
    spec = parse(f"{BASE}/{layers}", BASE)
    if thin:
        system.add_lv(spec.source.vg, spec.source.lv, attr="Vwi-aotz--", segtype="thin")
    runner = system.runner()
    settings = Settings(mount_base=BASE, state_dir=str(tmp_path), log_dir=str(tmp_path), size=size,
                        recovery=recovery)
    system.expect(spec)
    stack = Stack(Context(runner, system, settings, dle_id("c", "h", layers)), disk=layers)
    stack.setup(spec)
    stack.teardown()
    return runner.executed


def every_plan(tmp_path):
    combos = itertools.product(STACKS, ["ext4", "xfs", "btrfs", "ext2"], ["20%ORIGIN", "1.5G"],
                               [False, True], [True, False])
    for i, (layers, fstype, size, thin, recovery) in enumerate(combos):
        yield from planned_argv(layers, tmp_path / str(i), fstype, size, thin, recovery)


def test_every_planned_command_is_admitted(tmp_path):
    argvs = list(every_plan(tmp_path))
    assert len(argvs) > 1000
    refused = [a for a in argvs if not sudoers.matches(a, BASE, ".amsnap")]
    assert refused == []


DENIED = [
    ["lvremove", "--yes", "data0/vol00"],                                   # not a snapshot name
    ["lvremove", "--yes", "data0/vol00", "data0/vol00.amsnap"],
    ["lvremove", "--yes", "data0/vol00.amsnap", "--force"],
    ["lvremove", "-f", "data0/vol00.amsnap"],
    ["lvcreate", "--snapshot", "--name", "vol00", "--size", "1G", "data0/vol00"],
    ["lvcreate", "--name", "x.amsnap", "--size", "1G", "data0"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "data0/vol00", "--yes"],
    ["mdadm", "--stop", "/dev/md127"],                                       # not ours
    ["mdadm", "--stop", "/dev/md/guest0:0"],
    ["mdadm", "--stop", "/dev/md/snaplayers-0123456789ab", "/dev/md127"],
    ["mdadm", "--assemble", "/dev/md/snaplayers-0123456789ab", "--run", "--update=uuid",
     "--uuid=01234567:89abcdef:01234567:89abcdef", "/dev/sda"],               # a live disk
    ["mdadm", "--assemble", "/dev/md/snaplayers-0123456789ab", "--run", "--update=uuid",
     "--uuid=01234567:89abcdef:01234567:89abcdef", "/dev/shm/x.amsnap"],      # a user's symlink
    ["mdadm", "--assemble", "/dev/md/snaplayers-0123456789ab", "--run", "--update=uuid",
     "--uuid=01234567:89abcdef:01234567:89abcdef", "/dev/mapper/../sda.amsnap"],
    ["mdadm", "--zero-superblock", "/dev/mapper/data0-vol00.amsnap"],
    ["mdadm", "--examine", "--export", "/dev/shm/x"],
    ["dmsetup", "remove", "data0-vol00"],
    ["dmsetup", "remove_all"],
    ["dmsetup", "create", "snaplayers-0123456789ab-1p1", "--table", "0 10 linear /dev/sda 0"],
    ["mount", "-t", "ext4", "-o", "ro", "/dev/sda1", "/v/amsnap/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "rw", "/dev/mapper/data0-vol00.amsnap", "/v/amsnap/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro", "/dev/mapper/data0-vol00.amsnap", "/etc"],
    ["mount", "-t", "ext4", "-o", "ro", "/dev/mapper/data0-vol00.amsnap", "/v/amsnap/.."],
    ["mount", "-t", "ext4", "-o", "ro", "/dev/mapper/data0-vol00.amsnap", "/v/amsnap/lvm=a/../../etc"],
    ["mount", "-t", "ext4", "-o", "ro", "/dev/md127p1", "/v/amsnap/lvm=a+b"],
    ["mount", "--bind", "/", "/v/amsnap/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro", "/dev/mapper/data0-vol00.amsnap", "/v/amsnap/lvm=a+b", "/x"],
    ["umount", "/"], ["umount", "/v/amsnap"], ["umount", "/v/amsnap/lvm=a+b", "/home"],
    ["umount", "-l", "/v/amsnap/lvm=a+b"], ["umount", "/v/amsnap/lvm=a+b/../.."],
    ["blkid", "--probe", "--output", "export", "/etc/shadow"],
    ["sh", "-c", "id"],
    # guest LVM: only the renamed clone, only on our devices, with our device filter
    ["vgchange", "--activate", "n", "data0"],
    ["vgchange", "--config", 'devices/filter=["a|.*|"]', "--activate", "n", "snaplayers_0123456789ab"],
    ["lvchange", "--activate", "y", "data0/vol00"],
    ["vgimportclone", "--basevgname", "snaplayers_0123456789ab", "/dev/sda"],
    ["vgimportclone", "--config", "devices/global_filter=[\"a|^/dev/sda$|\",\"r|.*|\"] devices/filter=["
     "\"a|.*|\"] devices/scan_lvs=1 devices/use_devicesfile=0 devices/hints=\"none\" "
     "backup/backup=0 backup/archive=0", "--basevgname", "snaplayers_0123456789ab", "/dev/sda"],
    ["vgimportclone", "--config", "devices/global_filter=[\"a|^/dev/md/snaplayers-0123456789ab$|\","
     "\"r|.*|\"] devices/filter=[\"a|.*|\"] devices/scan_lvs=1 "
     "devices/use_devicesfile=0 devices/hints=\"none\" backup/backup=0 backup/archive=0",
     "--basevgname", "data0", "/dev/md/snaplayers-0123456789ab"],
    ["vgchange", "--config", "x", "--activate", "y", "snaplayers_0123456789ab"],
    # LUKS: our mappings only, key files from the key dir only
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/shadow",
     "/dev/mapper/snaplayers-0123456789ab-2p1", "snaplayers-0123456789ab-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/../../shadow.key",
     "/dev/mapper/snaplayers-0123456789ab-2p1", "snaplayers-0123456789ab-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key",
     "/dev/sda1", "snaplayers-0123456789ab-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key",
     "/dev/mapper/snaplayers-0123456789ab-2p1", "root"],
    ["cryptsetup", "close", "luks-root"],
    ["cryptsetup", "luksDump", "--dump-master-key", "/dev/mapper/snaplayers-0123456789ab-2p1"],
    ["cryptsetup", "luksErase", "/dev/mapper/snaplayers-0123456789ab-2p1"],
]


@pytest.mark.parametrize("argv", DENIED, ids=[" ".join(a)[:60] for a in DENIED])
def test_everything_else_is_refused(argv):
    assert not sudoers.matches([tools.path(argv[0])] + argv[1:], BASE, ".amsnap")


def test_visudo_accepts_both_syntaxes(tmp_path):
    visudo = shutil.which("visudo", path=tools.SAFE_PATH)
    assert visudo, "visudo is missing: `make deps` installs sudo"
    for syntax in ("regex", "wildcard"):
        f = tmp_path / syntax
        f.write_text(sudoers.generate("backup", BASE, ".amsnap", syntax))
        proc = subprocess.run([visudo, "-cf", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_wildcard_syntax_warns_about_itself():
    text = sudoers.generate("amandabackup", "/srv/snap", ".snap", "wildcard")
    assert "WARNING" in text and "amandabackup ALL=(root) NOPASSWD: SNAPLAYERS_AMANDABACKUP" in text


def test_bad_generator_input_is_rejected():
    from snaplayers.errors import BadInput
    for args in (("root;", BASE, ".amsnap"), ("backup", "/v/../x", ".amsnap"),
                 ("backup", BASE, "amsnap"), ("backup", BASE, ".a b")):
        with pytest.raises(BadInput):
            sudoers.generate(*args, syntax="regex")


def test_wildcard_rules_for_removing_a_link_cannot_take_more_arguments():
    """sudo's '*' also matches spaces, so `rm -f -- *` would remove anything: the md names
    become exact character classes instead."""
    text = sudoers.generate("backup", "/v/amsnap", ".amsnap", "wildcard")
    rm = [ln for ln in text.splitlines() if "/rm " in ln]
    assert rm and all("*" not in ln for ln in rm), rm
    stop = [ln for ln in text.splitlines() if "--stop" in ln]
    assert stop and all("*" not in ln for ln in stop), stop


def test_every_rule_stays_short_enough_for_sudo_to_match():
    # measured with sudo 1.9.13: a 1,092-character rule passed visudo but never matched
    for syntax in ("regex", "wildcard"):
        lines = sudoers.generate("backup", BASE, ".amsnap", syntax).splitlines()
        assert max(len(line) for line in lines) < 1000
