"""The plugin on the real fixture as the Amanda user, through its installed sudoers line and
helper: every DLE at once while the guest writes, then faults: killed half-way, an overflowing
snapshot, a busy or vanished mount point, the origin array up on the host. It must lose
nothing, fake nothing and leave nothing behind."""

import shlex

import pytest

from testbed.fixture.topology import MOUNT_BASE

pytestmark = pytest.mark.integration

from figures import record
from leftovers import nothing_left, plugin_status

PLUGIN = "/usr/lib/amanda/application/script-snaplayers"


def call(testbed, command, variant, *extra, device=None):
    """The plugin's argv as Amanda calls it for one of the fixture's DLEs."""
    return [PLUGIN, command, "--execute-where", "client", "--config", "TB", "--host", "storage0",
            "--disk", variant, "--device", device or testbed.device(variant), "--mount-base", MOUNT_BASE,
            *extra]


def as_backup(testbed, command, variant, *extra, device=None):
    return testbed.run("storage0", call(testbed, command, variant, *extra, device=device), user="backup")


def compare(testbed, *variants):
    """Each snapshot view against the guest's manifest; what differs counts as lost. Three
    calls for all the variants (each costs a second or more under TCG); returns each view's
    live-log check too."""
    devices = {v: testbed.device(v) for v in variants}
    seen = testbed.python("storage0", "guest.py", "restored", {"trees": devices})
    expected = testbed.python(testbed.topo.guest, "guest.py", "read",
                              {"paths": {v: testbed.manifest_path(v) for v in variants}})
    sizes = testbed.exec("storage0", ["du", "-sb", "--exclude=live", *devices.values()])
    record("bytes compared", sum(int(line.split()[0]) for line in sizes.splitlines()))
    for v in variants:
        if seen[v]["manifest"] != expected[v]:
            lost = set(expected[v].splitlines()) - set(seen[v]["manifest"].splitlines())
            out = testbed.exec(testbed.topo.guest, ["sh", "-c", "cd " + shlex.quote(testbed.mountpoint(v)) + " && du -cb "
                                          + " ".join(shlex.quote(ln[66:]) for ln in lost) + " | tail -1"])
            record("bytes lost", int(out.split()[0]))
    assert {v: seen[v]["manifest"] for v in variants} == expected
    return seen


def test_sigkill_in_the_set_up_is_recovered_by_the_next_call(testbed):
    """The plugin is killed right after its k-th command: the snapshot made, the array
    assembled, the whole stack up but not yet recorded so; the next PRE-DLE call recovers the
    half-built stack at once and the backup view is complete. (A kill after each of the other
    commands that make something is the unit tier's: test_stack.py.)"""
    variant = "md-part-ext4"
    argv = shlex.join(call(testbed, "PRE-DLE-BACKUP", variant, "--log-dir", "/tmp/killlog"))
    # the set-up's commands as the plugin plans them: killed right after the first, the middle
    # and the last that make something (what recovery must undo); each kill costs minutes
    # under TCG, and six of them took 541 s on a quiet host
    plan = testbed.exec("storage0", ["snaplayers", "plan", "--device", testbed.device(variant), "--mount-base",
                                     MOUNT_BASE, "--config", "TB", "--host", "storage0", "--disk", variant])
    setup = plan.split("# tear-down")[0].splitlines()[1:]
    steps = len(setup)
    made_by = {"lvcreate", "mdadm --assemble", "dmsetup create", "mkdir", "mount"}
    words = [line.split()[0].rsplit("/", 1)[-1:] + line.split()[1:2] for line in setup]
    makes = [i + 1 for i, w in enumerate(words) if w[0] in made_by or " ".join(w) in made_by]
    assemble = next(i + 1 for i, w in enumerate(words) if w == ["mdadm", "--assemble"])
    assert len(makes) == 5 and makes[-1] == steps, setup
    for k in (makes[0], assemble, steps):
        # start the plugin, wait until its log shows the k-th command started, SIGKILL it
        script = (f"rm -rf /tmp/killlog; {argv} >/dev/null 2>&1 & pid=$!; "
                  f"for i in $(seq 400); do n=$(cat /tmp/killlog/*.debug 2>/dev/null | grep -c ' + '); "
                  f"[ \"$n\" -ge {k} ] && break; sleep 0.02; done; kill -9 $pid; wait $pid; "
                  # the command it was running finishes on its own, as it would under Amanda
                  # (anchored: unanchored, the pattern matched this script's own shell, and the
                  # wait ran its full 200 rounds, 50 s a kill under TCG)
                  f"for i in $(seq 200); do pgrep -f '^/usr/bin/sudo -n ' >/dev/null || break; sleep 0.05; done; "
                  f"[ $i -lt 200 ] || {{ echo 'the killed call left its command running' >&2; exit 1; }}")
        testbed.exec("storage0", ["su", "backup", "-s", "/bin/sh", "-c", script])
        code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", variant)
        assert code == 0, f"after a kill at step {k}: {err}"
        assert testbed.exec("storage0", ["findmnt", "-n", "-o", "TARGET", testbed.device(variant)]).strip()
        if k in (assemble, steps):  # a rebuilt stack reads like any other: two full reads pay for all
            compare(testbed, variant)
        code, out, err = as_backup(testbed, "POST-DLE-BACKUP", variant)
        assert code == 0, err
        nothing_left(testbed)
        record("scenarios survived")


def test_snapshot_overflow_fails_the_dump_and_is_torn_down(testbed):
    variant = "lv-ext4"
    code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", variant, "--size", "8M")
    assert code == 0, err
    # the live guest writes more than the snapshot's 8 MiB of copy-on-write space
    testbed.exec("guest0", ["sh", "-c", f"dd if=/dev/urandom of={testbed.mountpoint(variant)}/big bs=1M "
                                        "count=24 conv=fsync status=none; sync"])
    code, out, err = as_backup(testbed, "POST-DLE-BACKUP", variant, "--size", "8M")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "overflowed" in err
    testbed.exec("guest0", ["rm", "-f", f"{testbed.mountpoint(variant)}/big"])
    nothing_left(testbed)
    record("scenarios survived")


def test_a_mount_gone_before_the_post_call_fails_the_dump(testbed):
    """dmeventd unmounts a monitored snapshot that overflows (seen on trixie): Amanda then read
    the bare mount point, so the dump must fail even when nothing else is wrong."""
    variant = "md-part-ext4"
    code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", variant)
    assert code == 0, err
    testbed.exec("storage0", ["umount", testbed.device(variant)])
    code, out, err = as_backup(testbed, "POST-DLE-BACKUP", variant)
    assert code == 4 and out == ""
    assert err.count("\n") == 1 and "no longer mounted" in err, err
    nothing_left(testbed)
    record("scenarios survived")


def test_a_leftover_goes_with_the_admins_cleanup_or_the_next_set_up_whatever_its_mount(testbed):
    """A PRE-DLE-BACKUP whose Amanda process is gone leaves its stack up. The Amanda user's
    `snaplayers cleanup` unmounts and removes all of it; one whose mount went as well (a storage
    host's restart takes it: the e2e restart test) is recovered by that DLE's next set-up."""
    variant = "lv-ext4"
    mp = testbed.device(variant)
    pre = shlex.join(call(testbed, "PRE-DLE-BACKUP", variant))

    def leftover():     # the shell that ran it ends: its stack's Amanda process is gone
        testbed.exec("storage0", ["su", "backup", "-s", "/bin/sh", "-c", pre + " >/dev/null"])
        assert testbed.exec("storage0", ["findmnt", "-n", "-o", "TARGET", mp]).strip() == mp
    leftover()
    out = testbed.exec("storage0", ["snaplayers", "cleanup"], user="backup")
    assert out.splitlines() == [f"torn down: {variant} ({mp})", "cleanup: 1 torn down, 0 failed"], out
    nothing_left(testbed)
    record("scenarios survived")
    leftover()
    testbed.exec("storage0", ["umount", mp])
    code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", variant)
    assert (code, err) == (0, ""), err
    stacks = plugin_status(testbed)["stacks"]
    assert [(s["disk"], s["state"]) for s in stacks] == [(variant, "up")], stacks
    assert testbed.exec("storage0", ["findmnt", "-n", "-o", "TARGET", mp]).strip() == mp
    code, out, err = as_backup(testbed, "POST-DLE-BACKUP", variant)
    assert (code, err) == (0, ""), err
    nothing_left(testbed)
    record("scenarios survived")


def test_a_mount_point_already_mounted_is_refused_and_nothing_is_created(testbed):
    variant = "lv-ext4"
    mp = testbed.device(variant)
    testbed.exec("storage0", ["sh", "-c", f"mkdir -p {shlex.quote(mp)} && mount -t tmpfs busy {shlex.quote(mp)}"])
    try:
        code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", variant)
        assert code != 0 and "already a mount point" in err and err.count("\n") == 1
        suffix = plugin_status(testbed)["names"]["snapshot_suffix"]
        assert not [lv for lv in testbed.exec("storage0", ["lvs", "--noheadings", "-o", "lv_name"]).split()
                    if lv.endswith(suffix)]
    finally:
        testbed.exec("storage0", ["sh", "-c", f"umount {shlex.quote(mp)}; rmdir {shlex.quote(mp)}"])
    nothing_left(testbed)
    record("scenarios survived")


class Dumps:
    """Each variant's PRE-DLE-BACKUP at once as the Amanda user, each from a shell of its own
    that lives until it runs the variant's POST-DLE-BACKUP, as sendbackup does (the plugin takes
    a stack whose Amanda process is gone for a leftover, and reaps it)."""

    def __init__(self, testbed, variants, where="/tmp/dumps"):
        self.testbed, self.variants, self.where = testbed, list(variants), where

    def call(self, command, v, phase):
        argv = shlex.join(call(self.testbed, command, v, "--level", "0"))
        d = f"{self.where}/{phase}"
        return f"{argv} > {d}/{v}.out 2> {d}/{v}.err; echo $? > {d}/{v}.rc"

    def wait(self, phase):
        """One exec that polls: each costs about a second under TCG."""
        self.testbed.exec("storage0", ["sh", "-c", f"for i in $(seq 1800); do "
                                       f"[ $(ls {self.where}/{phase}/*.rc 2>/dev/null | wc -l) -ge "
                                       f"{len(self.variants)} ] && exit 0; sleep 0.5; done; exit 1"])

    def read(self, phase, v, *more):
        d = f"{self.where}/{phase}"
        return self.testbed.exec("storage0", ["sh", "-c", "; echo -n @; ".join(
            [f"cat {d}/{v}.{x}" for x in ("rc", "out", "err")] + list(more))]).split("@")

    def start(self):
        # setsid: a session of their own, so nothing su does as it exits reaches them
        shells = " ".join(
            "setsid sh -c " + shlex.quote(f"echo $$ > {self.where}/{v}.pid; " + self.call("PRE-DLE-BACKUP", v, "pre")
                                   + f"; while [ ! -e {self.where}/go ]; do sleep 0.2; done; "
                                   + self.call("POST-DLE-BACKUP", v, "post"))
            + " </dev/null >/dev/null 2>&1 &" for v in self.variants)
        self.testbed.exec("storage0", ["sh", "-c", f"rm -rf {self.where} && mkdir -p {self.where}/pre "
                                       f"{self.where}/post && chown -R backup {self.where}"])
        self.testbed.exec("storage0", ["su", "backup", "-s", "/bin/sh", "-c", shells])
        self.wait("pre")

    def kill(self, v):
        """SIGKILL the variant's shell between its PRE and its POST: sendbackup killed."""
        self.testbed.exec("storage0", ["sh", "-c", f"kill -9 $(cat {self.where}/{v}.pid)"])
        self.variants.remove(v)

    def finish(self):
        self.testbed.exec("storage0", ["touch", f"{self.where}/go"])
        self.wait("post")
        return {v: tuple(self.read("post", v)) for v in self.variants}


def test_every_dle_at_once_is_byte_exact_and_a_single_point_in_time(testbed):
    """Every variant's PRE-DLE-BACKUP at once, as the Amanda user through sudo and the helper,
    while the guest keeps each filesystem mounted and appends fsynced records to a log on it:
    each view is the guest's data byte for byte, its log a prefix of complete records (one
    point in time), mounted read-only without setuid, devices or exec. The variants that share
    a VM disk share its snapshot (and md array) with their neighbours."""
    variants = [v.name for v in testbed.topo.variants]
    logs = {v: f"{testbed.mountpoint(v)}/live/log" for v in variants}
    writers = None
    dumps = Dumps(testbed, variants)
    try:
        writers = testbed.python("guest0", "guest.py", "writers-start", {"logs": list(logs.values())})
        dumps.start()
        for v in variants:
            device = testbed.device(v)
            # one exec for what each call left: each costs about a second under TCG
            rc, out, err, options = dumps.read("pre", v, f"findmnt -n -o OPTIONS {shlex.quote(device)}")
            assert (rc.strip(), err) == ("0", ""), err
            assert out == f"PROPERTY directory {device}\n"
            assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.strip().split(","))
        seen = compare(testbed, *variants)
        for v in variants:
            assert seen[v]["ok"] and seen[v]["records"] > 0, (v, seen[v])
        written = testbed.python("guest0", "guest.py", "writers-stop", writers)["records"]
        writers = None
        for v in variants:      # the guest went on writing after the snapshot
            assert written[logs[v]] >= seen[v]["records"], (v, written[logs[v]], seen[v])
        shared = shared_snapshots(testbed)
        assert shared and all(len(users) == 2 for users in shared.values()), shared
        record("snapshots shared by two DLEs", len(shared))
    finally:    # a failure here must not leave stacks or writers for the tests after it
        if writers:
            testbed.python("guest0", "guest.py", "writers-stop", writers)
        posts = dumps.finish()
    assert all(p == ("0\n", "", "") for p in posts.values()), posts
    nothing_left(testbed)
    for v in variants:
        assert testbed.run("storage0", ["test", "-e", testbed.device(v)])[0] != 0, f"{v}: mount point left"
    record("scenarios survived")


def shared_snapshots(testbed):
    """Snapshot LV -> the DLEs that read it, as `snaplayers status` tells it."""
    users = {}
    for stack in plugin_status(testbed)["stacks"]:
        users.setdefault(stack["layers"][0]["names"]["lv"], set()).add(stack["disk"])
    return {lv: disks for lv, disks in users.items() if len(disks) > 1}


def test_a_killed_dump_never_takes_the_shared_snapshot_from_the_other(testbed):
    """Two DLEs of one VM disk (an md RAID1 with two partitions) up at once; the Amanda process
    of one is SIGKILLed before its POST: the other still reads the snapshot byte for byte, its
    dump ends well, and its tear-down takes the killed one's leftovers with it."""
    pair = ["md-part-ext4", "md-part2-ext4"]
    dumps = Dumps(testbed, pair, where="/tmp/killed")
    try:
        dumps.start()
        for v in pair:
            assert dumps.read("pre", v)[0].strip() == "0", dumps.read("pre", v)
        names = plugin_status(testbed)
        stacks = {s["disk"]: s for s in names["stacks"]}
        assert [layer["shared_with"] for layer in stacks[pair[1]]["layers"][:2]] == [[pair[0]], [pair[0]]]
        lvs = [lv for lv in testbed.exec("storage0", ["lvs", "--noheadings", "-o", "lv_name"]).split()
               if lv.endswith(names["names"]["snapshot_suffix"])]
        assert len(lvs) == 1, lvs           # one snapshot, one assembled leg, for both
        dumps.kill(pair[0])
        compare(testbed, pair[1])
    finally:
        posts = dumps.finish()
    assert posts == {pair[1]: ("0\n", "", "")}, posts
    nothing_left(testbed)
    record("scenarios survived")


def test_the_origin_array_assembled_on_the_storage_host_is_never_what_is_mounted(testbed):
    """As udev incremental assembly would do on the storage host: the leg's own array is up
    there, mounted read-write. (A leg LIO exports cannot be assembled: LIO holds it
    exclusively, mdadm says "busy"; so this leg is one the host itself uses.) The plugin must
    mount its snapshot's copy of the array, never the origin, and leave the origin as it was."""
    vg = testbed.topo.vg("storage0")
    lv = "hostleg"
    leg = f"/dev/mapper/{vg.replace('-', '--')}-{lv}"
    origin = f"/dev/md/{testbed.prefix}-hostleg"
    mnt = f"/srv/{testbed.prefix}/hostleg"
    device = f"{MOUNT_BASE}/lvm={vg}+{lv},raid1"
    testbed.exec("storage0", ["sh", "-c", f"""set -e
        lvcreate -q -y -Wn -L 64M -n {lv} {vg}
        mdadm --create {origin} --run --level=1 --raid-devices=2 --metadata=1.2 {leg} missing
        mkfs.ext4 -q {origin}
        mkdir -p {mnt} && mount {origin} {mnt} && cp -a /usr/share/doc/lvm2 /usr/share/doc/mdadm {mnt}/
        sync"""])
    try:
        expected = testbed.python("storage0", "guest.py", "manifest", {"root": mnt})["manifest"]
        uuid = testbed.exec("storage0", ["mdadm", "--detail", "--export", origin])
        code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", "hostleg", device=device)
        assert (code, err) == (0, ""), err
        # what is mounted is a dm mapping over an md array over the snapshot, not the origin
        source = testbed.exec("storage0", ["findmnt", "-n", "-o", "SOURCE", device]).strip()
        chain = testbed.exec("storage0", ["lsblk", "-s", "-n", "-r", "-o", "NAME", source]).split()
        origin_kernel = testbed.exec("storage0", ["readlink", "-f", origin]).strip().rsplit("/", 1)[-1]
        names = plugin_status(testbed)["names"]
        assert origin_kernel not in chain and any(n.endswith("hostleg" + names["snapshot_suffix"]) for n in chain), chain
        assert f"MD_DEVNAME={names['md_prefix']}" in testbed.exec("storage0", ["mdadm", "--detail", "--export", source])
        seen = testbed.python("storage0", "guest.py", "manifest", {"root": device})["manifest"]
        record("bytes compared", int(testbed.exec("storage0", ["du", "-sb", device]).split()[0]))
        assert seen == expected
        code, out, err = as_backup(testbed, "POST-DLE-BACKUP", "hostleg", device=device)
        assert code == 0, err
        # the origin is as it was: same array, same UUID, still mounted read-write
        assert testbed.exec("storage0", ["mdadm", "--detail", "--export", origin]) == uuid
        assert testbed.exec("storage0", ["findmnt", "-n", "-o", "OPTIONS", mnt]).startswith("rw")
    finally:
        testbed.exec("storage0", ["sh", "-c", f"umount {mnt}; mdadm --stop {origin}; "
                                              f"lvremove -q -y {vg}/{lv}; rm -f {origin}; true"])
    nothing_left(testbed)
    record("scenarios survived")
