"""The plugin, installed in the storage host image as a user would install it, run as root on
storage0 (sudo off): amcheck, what is wrong in or under a snapshot, a guest VG named like the
host's. (Every variant's byte-exact view while the guest writes: test_faults.py, as the Amanda
user.)"""

import json

import pytest

from leftovers import nothing_left, plugin_status
from testbed.fixture.topology import MOUNT_BASE

pytestmark = pytest.mark.integration

PLUGIN = "/usr/lib/amanda/application/script-snaplayers"
# root's journals and locks: the plugin refuses, as root, the Amanda user's state dir
ROOT_STATE = "/run/tb-snaplayers-root"
ROOT_LOG = "/run/tb-snaplayers-root-log"


def plugin(testbed, command, variant, *extra):
    return testbed.run("storage0", [PLUGIN, command, "--execute-where", "client", "--config", "TB",
                                    "--host", "storage0", "--disk", variant,
                                    "--device", testbed.device(variant), "--mount-base", MOUNT_BASE,
                                    "--state-dir", ROOT_STATE, "--log-dir", ROOT_LOG, *extra])


def nothing_left_of_root(testbed):
    nothing_left(testbed)
    root = json.loads(testbed.exec("storage0", ["snaplayers", "status", "--json", "--state-dir", ROOT_STATE]))
    assert root["stacks"] == [], root["stacks"]


def assert_nothing_left(testbed, variant):
    nothing_left_of_root(testbed)
    assert not testbed.exec("storage0", ["findmnt", "-n", testbed.device(variant)], check=False).strip()
    code, _, _ = testbed.run("storage0", ["test", "-e", testbed.device(variant)])
    assert code != 0, "the mount point directory was left behind"


def test_amcheck_sets_up_silently_and_tears_down(testbed):
    code, out, err = plugin(testbed, "PRE-DLE-AMCHECK", "md-part-ext4")
    assert (code, out, err) == (0, "", "")
    assert testbed.exec("storage0", ["findmnt", "-n", "-o", "SOURCE", testbed.device("md-part-ext4")]).strip()
    code, out, err = plugin(testbed, "POST-DLE-AMCHECK", "md-part-ext4")
    assert (code, out, err) == (0, "", "")
    assert_nothing_left(testbed, "md-part-ext4")


def test_a_missing_lv_is_one_line_and_nothing_is_created(testbed):
    vg = testbed.topo.vg("storage0")
    code, out, err = testbed.run("storage0", [PLUGIN, "PRE-DLE-BACKUP", "--execute-where", "client",
                                              "--disk", "nosuch", "--device", f"{MOUNT_BASE}/lvm={vg}+nosuch",
                                              "--mount-base", MOUNT_BASE, "--state-dir", ROOT_STATE, "--log-dir", ROOT_LOG])
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and f"{vg}/nosuch does not exist" in err
    assert_nothing_left(testbed, "lv-ext4")


def test_as_root_the_amanda_users_state_dir_is_refused_and_nothing_is_created(testbed):
    """That user could plant symlinks where root would write its journal and locks."""
    variant = "lv-ext4"
    before = testbed.exec("storage0", ["ls", "-la", "/var/lib/amanda"])
    code, out, err = testbed.run("storage0", [PLUGIN, "PRE-DLE-BACKUP", "--execute-where", "client",
                                              "--disk", variant, "--device", testbed.device(variant),
                                              "--mount-base", MOUNT_BASE])
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "state-dir /var/lib/amanda/snaplayers is not root's alone" in err, err
    assert testbed.exec("storage0", ["ls", "-la", "/var/lib/amanda"]) == before
    assert_nothing_left(testbed, variant)


def test_testinfra_sees_the_guest_stack(testbed):
    import testinfra
    guest = testinfra.get_host(f"docker://{testbed.topo.container('guest0')}")
    storage = testinfra.get_host(f"docker://{testbed.topo.container('storage0')}")
    for pkg in ("mdadm", "open-iscsi", "parted", "xfsprogs"):
        assert guest.package(pkg).is_installed
    for pkg in ("lvm2", "python3-rtslib-fb", "amanda-client", "sudo"):
        assert storage.package(pkg).is_installed
    mdstat = guest.file("/proc/mdstat").content_string
    assert mdstat.count("active raid1") >= 2
    for variant in testbed.topo.variants:
        mp = guest.mount_point(testbed.mountpoint(variant.name))
        assert mp.exists and mp.filesystem == variant.fs
        assert guest.file(testbed.manifest_path(variant.name)).contains("data/dir0/sub0/file000.bin")
    sessions = guest.run("iscsiadm -m session").stdout
    for host in testbed.topo.storage_hosts:
        assert testbed.topo.iqn(host) in sessions
    assert storage.file("/usr/lib/amanda/application/script-snaplayers").mode == 0o755
    assert storage.run("visudo -cf /etc/sudoers.d/snaplayers").rc == 0
    assert json.loads(storage.run("lvs --reportformat json -o lv_name").stdout)["report"][0]["lv"]


def test_a_guest_vg_named_like_the_hosts_is_read_from_the_snapshot_alone(testbed):
    """The guest named its VG like storage0's: the host's VG is never renamed or activated,
    the guest's own PV keeps its identity, and no LVM record of the clone stays on the host."""
    variant = "md-part-vg-ext4"
    vg, lv = testbed.topo.variant(variant).guest_vg
    lvs = ["lvs", "--noheadings", "-o", "vg_name,vg_uuid,lv_name,lv_attr", vg]
    before = testbed.exec("storage0", lvs), testbed.exec("guest0", lvs)
    # the same VG and LV names on both sides, different VGs; the host's LV is not active
    assert before[0].split()[0::2] == before[1].split()[0::2] == [vg, lv]
    assert before[0].split()[1] != before[1].split()[1]
    assert before[0].split()[3][4] == "-" and before[1].split()[3][4] == "a"
    code, out, err = plugin(testbed, "PRE-DLE-BACKUP", variant, "--level", "0")
    assert (code, err) == (0, ""), err
    try:
        device = testbed.device(variant)
        source = testbed.exec("storage0", ["findmnt", "-n", "-o", "SOURCE", device]).strip()
        renamed = plugin_status(testbed)["names"]["guest_vg_prefix"]
        assert source.startswith(f"/dev/mapper/{renamed}"), source   # the renamed copy's LV
        assert testbed.exec("storage0", lvs) == before[0]      # the host's namesake: untouched
        seen = testbed.python("storage0", "guest.py", "manifest", {"root": device})["manifest"]
        assert seen == testbed.manifest(variant)
    finally:
        code, out, err = plugin(testbed, "POST-DLE-BACKUP", variant, "--level", "0")
    assert (code, out, err) == (0, "", "")
    assert (testbed.exec("storage0", lvs), testbed.exec("guest0", lvs)) == before
    assert_nothing_left(testbed, variant)


@pytest.mark.parametrize("variant,replace,message", [
    ("md-part-vg-ext4", ("+root", "+nosuch"), "has no LV nosuch (it has: root)"),
    ("md-part-vg-ext4", ("vg=", "vg=x"), "belongs to volume group"),
    ("md-part-luks-ext4", ("luks=tbkey", "luks=tbwrong"), "(wrong key)"),
    ("md-part-luks-ext4", ("luks=tbkey", "luks=nokey"), "nokey.key"),
])
def test_what_is_wrong_inside_the_snapshot_is_one_line_and_unwound(testbed, variant, replace, message):
    device = testbed.device(variant).replace(*replace)
    code, out, err = testbed.run("storage0", [PLUGIN, "PRE-DLE-AMCHECK", "--execute-where", "client",
                                              "--disk", "broken", "--device", device,
                                              "--mount-base", MOUNT_BASE, "--state-dir", ROOT_STATE, "--log-dir", ROOT_LOG])
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and message in err, err
    nothing_left_of_root(testbed)
    assert testbed.run("storage0", ["test", "-e", device])[0] != 0
