"""Least privilege as the installed plugin has it, in this cell's nodes, with this cell's sudo and
Python: the Amanda user may run one program as root, the helper; the helper refuses
every red-team argv; what a VM's filesystem holds (setuid binaries, device nodes) means nothing
on the storage host; a symlink in the mount base is refused or harmless; a journal the Amanda
user forges gets root's cleanup to do nothing, and that user's own only what its helper admits."""

import json
import shlex

import pytest
import redteam
from figures import record
from leftovers import nothing_left, plugin_status

from testbed.amanda import CLIENT
from testbed.fixture.topology import MOUNT_BASE

pytestmark = pytest.mark.e2e

# The helper's whole decision, run by the node's own Python from the installed file: sudo has
# already admitted the helper with any arguments, so this is what stands between them and root.
CHECK = """
import json, runpy, sys
helper = runpy.run_path(sys.argv[1])
admitted = []
for argv in json.load(open(sys.argv[2])):
    try:
        helper["admit"](helper["POLICY"], argv)
        admitted.append(argv)
    except helper["Refused"]:
        pass
print(json.dumps(admitted))
"""

# sudo's own decision on each argv as a command of its own, and on it handed to the helper;
# four sudo processes at a time (516 of them one by one took most of this test's 236 s)
SUDO_L = """
import json, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
user, helper = sys.argv[1], sys.argv[2]

def listed(argv):
    return subprocess.run(["sudo", "-l", "-U", user, *argv], capture_output=True).returncode == 0

def decide(argv):
    tool = shutil.which(argv[0], path="/usr/sbin:/usr/bin:/sbin:/bin") if argv[0] else None
    return bool(tool) and listed([tool, *argv[1:]]), listed([helper, *argv])

red = json.load(open(sys.argv[3]))
with ThreadPoolExecutor(4) as pool:
    decided = list(pool.map(decide, red))
print(json.dumps([[a for a, d in zip(red, decided) if d[0]], [a for a, d in zip(red, decided) if d[1]]]))
"""


def helper_of(tb, user):
    """The one command sudo lets the Amanda user run, as sudo itself lists it."""
    out = tb.exec(CLIENT, ["sudo", "-l", "-U", user])
    commands = [ln.split("NOPASSWD:", 1)[1].strip() for ln in out.splitlines() if "NOPASSWD:" in ln]
    assert len(commands) == 1 and commands[0].startswith("/"), out
    return commands[0]


STATE_DIR = "/var/lib/amanda/snaplayers"     # the state-dir property's default (README)
FORGED = "f0f0f0f0f0f0"


def a_forged_journal_gets_root_nothing(tb, user, variant):
    """The state dir is the Amanda user's: a journal it forges, naming a mount of the host's
    own as its stack's, gets root's `snaplayers cleanup` to do nothing (root refuses to work in
    a directory that user can write), and that user's own cleanup only what its helper admits."""
    assert tb.exec(CLIENT, ["stat", "-c", "%U", STATE_DIR]).strip() == user
    stack = next(s for s in plugin_status(tb, CLIENT, user)["stacks"] if s["disk"] == variant)
    real = json.loads(tb.exec(CLIENT, ["cat", f"{STATE_DIR}/{stack['dle_id']}.json"]))
    victim = "/srv/victim-mnt"
    tb.exec(CLIENT, ["sh", "-c", f"mkdir -p {victim} && mount -t tmpfs tbvictim {victim}"])
    try:
        majmin = tb.exec(CLIENT, ["findmnt", "-n", "-o", "MAJ:MIN", victim]).strip()
        mount = next(r for r in real["layers"] if r["kind"] == "mount")
        forged = dict(real, dle_id=FORGED, disk="forged",
                      layers=[dict(mount, mountpoint=victim, source_rdev=majmin)])
        code, _, err = tb.run(CLIENT, ["sh", "-c", f"cat > {STATE_DIR}/{FORGED}.json <<'EOF'\n"
                                                   f"{json.dumps(forged)}\nEOF"], user=user)
        assert code == 0, err
        code, out, err = tb.run(CLIENT, ["snaplayers", "cleanup", "--disk", "forged"])
        assert code == 2 and out == "" and err.count("\n") == 1 and "not root's alone" in err, out + err
        assert tb.exec(CLIENT, ["find", STATE_DIR, "-user", "root"]).strip() == ""
        code, out, err = tb.run(CLIENT, ["snaplayers", "cleanup", "--disk", "forged"], user=user)
        assert code == 1 and "FAILED: forged:" in out and "refused" in out, out + err
        assert tb.exec(CLIENT, ["findmnt", "-n", "-o", "SOURCE", victim]).strip() == "tbvictim"
        record("forged journals refused (root's cleanup, the helper)", 2)
    finally:
        tb.exec(CLIENT, ["sh", "-c", f"rm -f {STATE_DIR}/{FORGED}.json {STATE_DIR}/{FORGED}.lock; "
                                     f"umount {victim}; rmdir {victim}"])


def put_json(tb, path, data):
    tb.exec(CLIENT, ["sh", "-c", f"cat > {path} <<'EOF'\n{json.dumps(data)}\nEOF\nchmod 0644 {path}"])


def test_sudo_admits_the_helper_alone_and_the_helper_refuses_every_red_team_argv(amanda):
    tb, user = amanda.tb, amanda.layout.user
    helper = helper_of(tb, user)
    red = redteam.argvs(tb.topo.vg(CLIENT), MOUNT_BASE)
    put_json(tb, "/tmp/redteam.json", red)
    put_json(tb, "/tmp/own.json", redteam.own(tb.topo.vg(CLIENT), MOUNT_BASE))
    direct, via = json.loads(tb.exec(CLIENT, ["python3", "-c", SUDO_L, user, helper, "/tmp/redteam.json"]))
    assert direct == [], f"sudo lets {user} run these without the helper: {direct}"
    assert len(via) == len(red)     # sudo hands every argv to the helper: the helper decides
    # as root, as sudo runs it: its guards look at /dev and /sys as root does
    admitted = json.loads(tb.exec(CLIENT, ["python3", "-c", CHECK, helper, "/tmp/redteam.json"]))
    assert admitted == [], f"the helper admits: {admitted}"
    # and the plugin's own forms are admitted by the same installed helper (the probe works)
    own = json.loads(tb.exec(CLIENT, ["python3", "-c", CHECK, helper, "/tmp/own.json"]))
    assert len(own) == len(redteam.OWN)
    # the whole real path for a few: sudo, then the helper, which refuses with one line
    for argv in red[:6] + [a for a in red if a[0] == "lvremove"][:2]:
        code, out, err = tb.run(CLIENT, ["sudo", "-n", helper, *argv], user=user)
        assert code == 126 and out == "" and err.count("\n") == 1 and "refused" in err, (argv, err)
    record("red-team argv tried (real sudo -l, installed helper)", len(red))
    record("red-team argv admitted", len(direct) + len(admitted))


def test_a_guests_setuid_binaries_device_nodes_and_a_planted_symlink_give_nothing(amanda):
    tb, user = amanda.tb, amanda.layout.user
    plugin = f"{amanda.layout.application_dir}/script-snaplayers"
    variant = "lv-ext4"
    device = tb.device(variant)

    def call(command):
        return tb.run(CLIENT, [plugin, command, "--execute-where", "client", "--config", "TB",
                               "--host", CLIENT, "--disk", variant, "--device", device,
                               "--mount-base", MOUNT_BASE], user=user)

    # the guest (its owner is root there) plants a setuid-root shell and id, and a device node
    # of the storage host's own disk (its PV), mode 0666
    pv = tb.exec(CLIENT, ["sh", "-c", f"pvs --noheadings -o pv_name --select vg_name={tb.topo.vg(CLIENT)} "
                                      "| head -1 | xargs readlink -f"]).strip()
    major, minor = (int(x, 16) for x in tb.exec(CLIENT, ["stat", "-c", "%t %T", pv]).split())
    planted = f"{tb.mountpoint(variant)}/planted"
    tb.exec("guest0", ["sh", "-c", f"set -e; mkdir -p {planted}; cp /bin/bash {planted}/suid-bash; "
                                   f"cp /usr/bin/id {planted}/suid-id; chmod 4755 {planted}/suid-bash {planted}/suid-id; "
                                   f"mknod -m 0666 {planted}/hostdisk b {major} {minor}; sync"])
    try:
        code, out, err = call("PRE-DLE-BACKUP")
        assert code == 0, err
        seen = f"{device}/planted"
        opts = tb.exec(CLIENT, ["findmnt", "-n", "-o", "OPTIONS", device]).strip().split(",")
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(opts), opts
        # the planted files are there, as the guest made them (the test is not vacuous)
        assert tb.exec(CLIENT, ["stat", "-c", "%a %U %F", f"{seen}/suid-id"]).split()[:2] == ["4755", "root"]
        assert "block special" in tb.exec(CLIENT, ["stat", "-c", "%F", f"{seen}/hostdisk"])
        for argv in ([f"{seen}/suid-id", "-u"], [f"{seen}/suid-bash", "-p", "-c", "id -u"],
                     ["/lib64/ld-linux-x86-64.so.2", f"{seen}/suid-id", "-u"]):
            code, out, err = tb.run(CLIENT, ["sh", "-c", shlex.join(argv)], user=user)
            assert code != 0 and out.strip() != "0", f"{argv} ran: {out}"
            record("setuid, device-node, symlink and stale-name cases refused")
        code, out, err = tb.run(CLIENT, ["python3", "-c", f"open({seen + '/hostdisk'!r}, 'r+b')"], user=user)
        assert code != 0 and "PermissionError" in err, err
        record("setuid, device-node, symlink and stale-name cases refused")
        # the Amanda user cannot plant a symlink where mounts happen
        code, _, err = tb.run(CLIENT, ["ln", "-s", "/etc", f"{MOUNT_BASE}/lvm=x+y"], user=user)
        assert code != 0 and "Permission denied" in err, err
        record("setuid, device-node, symlink and stale-name cases refused")
        a_forged_journal_gets_root_nothing(tb, user, variant)
        code, out, err = call("POST-DLE-BACKUP")
        assert (code, err) == (0, "")
    finally:
        tb.exec("guest0", ["rm", "-rf", planted])
    # a symlink in the mount base (planted by whoever could): the helper neither mounts,
    # unmounts nor removes through it, and the plugin refuses in one line; the target is intact
    helper = helper_of(tb, user)
    victim = "/srv/victim"
    tb.exec(CLIENT, ["sh", "-c", f"mkdir -p {victim} && touch {victim}/keep && ln -s {victim} {shlex.quote(device)}"])
    try:
        for argv in (["umount", device], ["rmdir", device], ["mkdir", device]):
            code, out, err = tb.run(CLIENT, ["sudo", "-n", helper, *argv], user=user)
            assert code == 126 and ("symlink" in err or "exists" in err), (argv, err)
        code, out, err = call("PRE-DLE-BACKUP")
        assert code != 0 and out == "" and err.count("\n") == 1, err
        assert tb.exec(CLIENT, ["ls", victim]).split() == ["keep"]
        record("setuid, device-node, symlink and stale-name cases refused")
    finally:
        tb.exec(CLIENT, ["sh", "-c", f"rm -f {shlex.quote(device)}; rm -rf {victim}"])
    # a mount base the Amanda user can write: refused in one line, before anything is made
    tb.exec(CLIENT, ["chown", user, MOUNT_BASE])
    try:
        code, out, err = call("PRE-DLE-BACKUP")
        assert code != 0 and err.count("\n") == 1 and "not root's alone" in err, err
        suffix = plugin_status(tb, CLIENT, user)["names"]["snapshot_suffix"]
        assert not [lv for lv in tb.exec(CLIENT, ["lvs", "--noheadings", "-o", "lv_name"]).split()
                    if lv.endswith(suffix)]
        record("setuid, device-node, symlink and stale-name cases refused")
    finally:
        tb.exec(CLIENT, ["chown", "root", MOUNT_BASE])
    nothing_left(tb, status_user=user)


def test_a_stale_name_pointing_at_someone_elses_device_is_refused(amanda):
    """Without udev a stopped array's /dev/md link or a removed mapping's node lingers and later
    points at whatever takes that number: a guest's live array, a live origin LV. The helper
    checks in the kernel what a name is before it runs anything on it."""
    tb, user = amanda.tb, amanda.layout.user
    helper = helper_of(tb, user)
    names = plugin_status(tb, CLIENT, user)["names"]        # the names the plugin would use
    live_md = tb.exec(CLIENT, ["sh", "-c", "readlink -f $(ls -d /dev/md/* | grep -v -F "
                               f"{shlex.quote(names['md_link_prefix'])} | head -1)"]).strip()
    origin = f"/dev/mapper/{tb.topo.vg(CLIENT).replace('-', '--')}-vol02"
    major, minor = (int(x, 16) for x in tb.exec(CLIENT, ["stat", "-L", "-c", "%t %T", origin]).split())
    link, node = f"{names['md_link_prefix']}{redteam.ID}", f"/dev/mapper/{names['dm_prefix']}{redteam.ID}-2p1"
    tb.exec(CLIENT, ["sh", "-c", f"ln -s {live_md} {link} && mknod {node} b {major} {minor}"])
    try:
        for argv in (["mdadm", "--detail", "--export", link], ["mdadm", "--stop", link],
                     ["blkid", "--probe", "--output", "export", live_md],
                     ["blockdev", "--getsz", node], ["mdadm", "--examine", "--export", node],
                     ["dmsetup", "create", f"{names['dm_prefix']}{redteam.ID}-1p1", "--table", f"0 8 linear {live_md} 0"],
                     ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", node, f"{MOUNT_BASE}/lvm=x+y"]):
            code, out, err = tb.run(CLIENT, ["sudo", "-n", helper, *argv], user=user)
            assert code == 126 and err.count("\n") == 1 and ("not that mapping" in err or "not snaplayers'" in err
                                                              or "no md array" in err), (argv, err)
            record("setuid, device-node, symlink and stale-name cases refused")
    finally:
        tb.exec(CLIENT, ["rm", "-f", link, node])
    assert tb.exec(CLIENT, ["sh", "-c", f"test -b {live_md} && echo ok"]).strip() == "ok"
    # an LV of the host's that is merely named like a snapshot is its owner's data
    plain = f"{tb.topo.vg(CLIENT)}/tbplain{names['snapshot_suffix']}"
    tb.exec(CLIENT, ["lvcreate", "-q", "-y", "-Wn", "-L", "8M", "-n", plain.split("/")[1], plain.split("/")[0]])
    try:
        code, out, err = tb.run(CLIENT, ["sudo", "-n", helper, "lvremove", "--yes", plain], user=user)
        assert code == 126 and err.count("\n") == 1 and "is not a snapshot" in err, err
        assert tb.run(CLIENT, ["lvs", plain])[0] == 0
        record("setuid, device-node, symlink and stale-name cases refused")
    finally:
        tb.exec(CLIENT, ["lvremove", "-q", "-y", plain])
