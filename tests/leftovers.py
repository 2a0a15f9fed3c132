"""What a torn-down stack must not leave on the storage host: one check for every tier."""

from testbed.topology import MOUNT_BASE

# LVM's own records of a VG: metadata backups and archives, the devices file, the scan hints
LVM_TRACES = ("ls /etc/lvm/backup /etc/lvm/archive /etc/lvm/devices 2>/dev/null; "
              "cat /run/lvm/hints 2>/dev/null; true")


def nothing_left(testbed, node="storage0", status_user="root"):
    """Names carry 'snaplayers' with '-' (ours) or '_' (a guest VG renamed in the snapshot)."""
    assert testbed.exec(node, ["snaplayers", "status"], user=status_user).strip() == "no stacks recorded"
    assert ".amsnap" not in testbed.exec(node, ["lvs", "--noheadings", "-o", "lv_name"])
    assert "snaplayers" not in testbed.exec(node, ["dmsetup", "ls"])
    # nor a /dev/snaplayers_<id> folder of the renamed guest VG, or a /dev/mapper node
    assert "snaplayers" not in testbed.exec(node, ["ls", "/dev", "/dev/mapper"])
    # and no /dev/md link of a stopped array (a host without udev keeps them otherwise)
    assert "snaplayers" not in testbed.exec(node, ["sh", "-c", "ls /dev/md/ 2>/dev/null; true"])
    assert "snaplayers" not in testbed.exec(node, ["sh", "-c", "mdadm --detail --scan 2>/dev/null; true"])
    assert "snaplayers" not in testbed.exec(node, ["sh", "-c", LVM_TRACES])
    assert MOUNT_BASE not in testbed.exec(node, ["cat", "/proc/self/mountinfo"])
