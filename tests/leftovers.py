"""What a torn-down stack must not leave on the storage host: one check for every tier. What to
look for is what the installed plugin says its names are (`snaplayers status --json`)."""

import json

from testbed.fixture.topology import MOUNT_BASE

# LVM's own records of a VG: metadata backups and archives, the devices file, the scan hints
LVM_TRACES = ("ls /etc/lvm/backup /etc/lvm/archive /etc/lvm/devices 2>/dev/null; "
              "cat /run/lvm/hints 2>/dev/null; true")


def plugin_status(testbed, node="storage0", user="root"):
    return json.loads(testbed.exec(node, ["snaplayers", "status", "--json"], user=user))


def nothing_left(testbed, node="storage0", status_user="root"):
    status = plugin_status(testbed, node, status_user)
    assert status["stacks"] == [], status["stacks"]
    names = status["names"]
    made = {names[k] for k in ("dm_prefix", "guest_vg_prefix", "md_prefix")}

    def clean(text, what):
        found = [n for n in made if n in text]
        assert not found, f"{what} still holds {found}:\n{text}"
    lvs = testbed.exec(node, ["lvs", "--noheadings", "-o", "lv_name"]).split()
    assert not [lv for lv in lvs if lv.endswith((names["snapshot_suffix"], names["discover_suffix"]))], lvs
    clean(testbed.exec(node, ["dmsetup", "ls"]), "dmsetup ls")
    # nor a /dev/<renamed guest VG> folder, or a /dev/mapper node (LVM without udev leaves them)
    clean(testbed.exec(node, ["ls", "/dev", "/dev/mapper"]), "/dev")
    # and no /dev/md link of a stopped array (a host without udev keeps them otherwise)
    # (one exec: each costs the emulated guest about 1.3 s of CPU) and no discover probe's journal
    md, _, probes = testbed.exec(node, ["sh", "-c", "ls /dev/md/ 2>/dev/null; echo ==; ls "
                                        f"{names['discover_state_dir']} 2>/dev/null; true"]).partition("==\n")
    clean(md, "/dev/md")
    assert not [p for p in probes.split() if p.endswith(".json")], probes
    clean(testbed.exec(node, ["sh", "-c", "mdadm --detail --scan 2>/dev/null; true"]), "mdadm --detail --scan")
    clean(testbed.exec(node, ["sh", "-c", LVM_TRACES]), "LVM's records")
    assert (names["mount_base"] or MOUNT_BASE) not in testbed.exec(node, ["cat", "/proc/self/mountinfo"])
