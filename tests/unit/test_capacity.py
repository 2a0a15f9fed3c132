"""The room a snapshot takes, as lvcreate counts it: whole extents, LVM's units."""

import pytest

from snaplayers.layers.lvm import snapshot_bytes

MiB, GiB, EXTENT = 2**20, 2**30, 4 * 2**20


@pytest.mark.parametrize("size,lv_size,need", [
    ("20%ORIGIN", 10 * GiB, 2048 * MiB), ("20%ORIGIN", 1000 * MiB, 200 * MiB),
    ("20%ORIGIN", 1001 * MiB, 204 * MiB),     # 200.2 MiB: 51 extents
    ("1.5G", GiB, 1536 * MiB), ("300", GiB, 300 * MiB), ("8193s", GiB, 8 * MiB)])
def test_snapshot_sizes_in_whole_extents(size, lv_size, need):
    assert snapshot_bytes(size, lv_size, EXTENT) == need
