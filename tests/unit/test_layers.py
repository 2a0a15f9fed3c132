"""Exact argv sequences per layer combination, through the simulated host."""

import pytest

from snaplayers.layers.raid1 import DegradedRaid1

LVS = ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
       "lv_name,lv_attr,origin,segtype,data_percent"]
UUID = "0a0a0a0a:1b1b1b1b:2c2c2c2c:3d3d3d3d"


@pytest.fixture(autouse=True)
def fixed_uuid(monkeypatch):
    monkeypatch.setattr(DegradedRaid1, "new_uuid", staticmethod(lambda: UUID))


def test_raid1_partition_argv(world, spec):
    stack = world.stack()
    md = f"/dev/md/snaplayers-{stack.ctx.dle_id}"
    mapping = f"snaplayers-{stack.ctx.dle_id}-2p1"
    mp = "/v/amsnap/lvm=data0+vol00,raid1,part=1"
    assert stack.setup(spec("lvm=data0+vol00,raid1,part=1")) == mp
    n = len(world.runner.executed)
    stack.teardown()
    cmds = world.commands()
    assert cmds[:n] == [
        LVS + ["data0/vol00"],
        LVS + ["data0/vol00.amsnap"],
        ["lvcreate", "--snapshot", "--name", "vol00.amsnap", "--extents", "20%ORIGIN", "data0/vol00"],
        LVS + ["data0/vol00.amsnap"],
        ["mdadm", "--examine", "--export", "/dev/mapper/data0-vol00.amsnap"],
        ["mdadm", "--assemble", md, "--run", "--update=uuid", f"--uuid={UUID}",
         "/dev/mapper/data0-vol00.amsnap"],
        ["mdadm", "--detail", "--export", md],
        ["partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", "--nr", "1", md],
        ["blockdev", "--getsz", md],
        ["dmsetup", "create", mapping, "--table", f"0 524288 linear {md} 2048"],
        ["dmsetup", "mknodes", mapping],
        ["blkid", "--probe", "--output", "export", f"/dev/mapper/{mapping}"],
        ["mount", "-t", "ext4", "-o", "ro", f"/dev/mapper/{mapping}", mp],
    ]
    assert cmds[n:] == [
        ["umount", mp],
        ["dmsetup", "table", mapping],
        ["dmsetup", "remove", "--retry", mapping],
        ["dmsetup", "mknodes", mapping],
        ["mdadm", "--detail", "--export", md],
        ["mdadm", "--stop", md],
        LVS + ["data0/vol00.amsnap"],
        ["lvremove", "--yes", "data0/vol00.amsnap"],
    ]
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}


def test_lv_partition_argv(world, spec):
    stack = world.stack("vol01")
    mapping = f"snaplayers-{stack.ctx.dle_id}-1p2"
    stack.setup(spec("lvm=data0+vol01,part=2"))
    cmds = world.commands()
    assert cmds[4:9] == [
        ["partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", "--nr", "2",
         "/dev/mapper/data0-vol01.amsnap"],
        ["blockdev", "--getsz", "/dev/mapper/data0-vol01.amsnap"],
        ["dmsetup", "create", mapping, "--table", "0 524288 linear /dev/mapper/data0-vol01.amsnap 4096"],
        ["dmsetup", "mknodes", mapping],
        ["blkid", "--probe", "--output", "export", f"/dev/mapper/{mapping}"],
    ]
    assert world.system.mount_rows[0]["source"] == f"/dev/mapper/{mapping}"


def test_plain_lv_argv_and_size_property(tmp_path, spec):
    from conftest import World
    world = World(tmp_path, size="64M")
    world.stack("vol02").setup(spec("lvm=data0+vol02"))
    assert world.commands()[2] == ["lvcreate", "--snapshot", "--name", "vol02.amsnap", "--size",
                                   "64M", "data0/vol02"]
    assert world.commands()[-1] == ["mount", "-t", "ext4", "-o", "ro",
                                    "/dev/mapper/data0-vol02.amsnap", "/v/amsnap/lvm=data0+vol02"]


def test_thin_origin_needs_no_size(world, spec):
    world.system.add_lv("data0", "thin0", attr="Vwi-aotz--", segtype="thin")
    world.stack("thin0").setup(spec("lvm=data0+thin0"))
    assert world.commands()[2] == ["lvcreate", "--snapshot", "--name", "thin0.amsnap",
                                   "--setactivationskip", "n", "data0/thin0"]


@pytest.mark.parametrize("fstype,replay,no_replay", [
    ("ext4", "ro", "ro,noload"), ("ext3", "ro", "ro,noload"), ("ext2", "ro", "ro"),
    ("xfs", "ro,nouuid", "ro,nouuid,norecovery"), ("btrfs", "ro", "ro,rescue=nologreplay")])
def test_mount_options_replay_the_journal_unless_opted_out(tmp_path, spec, fstype, replay, no_replay):
    from conftest import World
    for recovery, expected in ((True, replay), (False, no_replay)):
        world = World(tmp_path / str(recovery), recovery=recovery)
        world.system.fstype = fstype
        world.stack().setup(spec("lvm=data0+vol02"))
        assert world.commands()[-1][1:5] == ["-t", fstype, "-o", expected]


def test_snapshot_of_a_snapshot_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.add_lv("data0", "vol09", attr="swi-a-s---", origin="vol00")
    with pytest.raises(LayerError, match="not an origin"):
        world.stack().setup(spec("lvm=data0+vol09"))
    assert not any(c[0] == "lvcreate" for c in world.commands())


def test_missing_lv_is_refused_before_anything_is_created(tmp_path, spec):
    from conftest import World
    from snaplayers.errors import LayerError
    world = World(tmp_path, permissive=False)
    with pytest.raises(LayerError, match="does not exist"):
        world.stack().setup(spec("lvm=data0+nosuch"))
    assert [c[0] for c in world.commands()] == ["lvs"]


def test_unrecorded_existing_snapshot_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.add_lv("data0", "vol00.amsnap", attr="swi-a-s---", origin="vol00")
    with pytest.raises(LayerError, match="not recorded"):
        world.stack().setup(spec("lvm=data0+vol00"))
    assert "data0/vol00.amsnap" in world.system.lvs     # someone else's: left alone


def test_non_raid1_member_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.members["/dev/mapper/data0-vol00.amsnap"] = "raid5"
    with pytest.raises(LayerError, match="raid5"):
        world.stack().setup(spec("lvm=data0+vol00,raid1"))
    assert world.kernel_objects()["lvs"] == []


def test_partition_outside_its_device_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.tables["/dev/mapper/data0-vol01.amsnap"] = {2: (2048, 10 ** 12)}
    with pytest.raises(LayerError, match="outside"):
        world.stack().setup(spec("lvm=data0+vol01,part=2"))
    assert world.kernel_objects()["mappings"] == {}


def test_unsupported_filesystem_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.fstype = "swap"
    with pytest.raises(LayerError, match="swap"):
        world.stack().setup(spec("lvm=data0+vol02"))
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}
