"""Thin origins on real LVM, as the Amanda user through its sudoers line and helper: which
states of a thin snapshot still read as it was taken. A thin LV written whole reports Data%
100, and so does its snapshot, as their normal state; a pool out of data space fails the VM's
writes and leaves the snapshot whole. (A pool that failed, or went read-only on full metadata,
fails the dump: tests/unit/test_thin.py; neither can be made to happen on demand.)"""

import shlex

import pytest

from figures import record
from leftovers import nothing_left, plugin_status
from test_faults import as_backup, compare
from testbed.fixture.topology import MOUNT_BASE

pytestmark = pytest.mark.integration


def lv(testbed, name):
    """lv_attr, data_percent, segtype and pool_lv of one of storage0's LVs, as LVM reports them."""
    out = testbed.exec("storage0", ["lvs", "--noheadings", "--separator", "|", "-o",
                                    "lv_attr,data_percent,segtype,pool_lv", name])
    return dict(zip(("attr", "data", "segtype", "pool"), (f.strip() for f in out.strip().split("|"))))


def test_a_thin_lv_written_whole_is_at_data_100_and_its_snapshot_is_a_good_dump(testbed):
    variant = "thin-ext4"
    vg, origin = testbed.topo.vg("storage0"), testbed.topo.variant(variant).legs[0].lv
    assert lv(testbed, f"{vg}/{origin}")["data"] == "100.00"
    code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", variant)
    assert code == 0, err
    snap = lv(testbed, f"{vg}/{origin}{plugin_status(testbed)['names']['snapshot_suffix']}")
    # the state the plugin took for an overflow before: Data% 100, health fine
    assert (snap["segtype"], snap["data"], snap["attr"][8]) == ("thin", "100.00", "-"), snap
    compare(testbed, variant)
    code, out, err = as_backup(testbed, "POST-DLE-BACKUP", variant)
    assert (code, err) == (0, ""), err
    nothing_left(testbed)
    record("thin snapshot states measured on real LVM")


def test_a_pool_out_of_data_space_leaves_the_thin_snapshot_whole_and_the_dump_good(testbed):
    """What real LVM shows when the pool fills under a live snapshot (health D, Data% 100), and
    that the snapshot then still reads as taken, so the plugin's check passes it. (The old check
    passed it too, the snapshot's own Data% being low: this proves the new check on that state;
    the Data% 100 case above is the one the old check failed.)"""
    vg = testbed.topo.vg("storage0")
    pool, origin, mnt = f"{vg}/tbfullpool", f"{vg}/tbfull", "/tmp/tbfull"
    device = f"{MOUNT_BASE}/lvm={vg}+tbfull"
    # a 16 MiB pool under a 64 MiB thin LV; the pool errors at once when full (not after 60 s)
    testbed.exec("storage0", ["sh", "-c", "set -e; "
                              f"lvcreate -q -y -Wn -L 16M --errorwhenfull y -T {pool}; "
                              f"lvcreate -q -y -V 64M -T {pool} -n tbfull; "
                              f"mkfs.ext4 -q -F -E nodiscard /dev/{origin}; mkdir -p {mnt}; "
                              f"mount /dev/{origin} {mnt}; head -c 2M /dev/urandom > {mnt}/f; "
                              f"sha256sum {mnt}/f > /tmp/tbfull.sum; umount {mnt}"])
    try:
        code, out, err = as_backup(testbed, "PRE-DLE-BACKUP", "tbfull", device=device)
        assert code == 0, err
        # the VM writes its whole disk: the pool runs out of data space half-way
        code, _, err = testbed.run("storage0", ["dd", "if=/dev/urandom", f"of=/dev/{origin}", "bs=1M",
                                                "count=64", "oflag=direct", "status=none"])
        assert code != 0, "the writes did not fill the pool"
        full = lv(testbed, pool)
        assert (full["data"], full["attr"][8]) == ("100.00", "D"), full
        seen = testbed.exec("storage0", ["sh", "-c", f"cd {shlex.quote(device)} && sha256sum f"]).split()[0]
        assert seen == testbed.exec("storage0", ["cat", "/tmp/tbfull.sum"]).split()[0]
        code, out, err = as_backup(testbed, "POST-DLE-BACKUP", "tbfull", device=device)
        assert (code, err) == (0, ""), err
        record("thin snapshot states measured on real LVM")
    finally:
        as_backup(testbed, "POST-DLE-BACKUP", "tbfull", device=device)
        testbed.exec("storage0", ["sh", "-c", f"umount {mnt} 2>/dev/null; lvremove -q -y {origin} {pool}; "
                                  f"rm -rf {mnt} /tmp/tbfull.sum"])
    nothing_left(testbed)
