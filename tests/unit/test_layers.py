"""Exact argv sequences per layer combination, through the simulated host."""

import pytest

from conftest import node as ids

from snaplayers.layers.raid1 import DegradedRaid1

LVS = ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
       "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size"]
UUID = "0a0a0a0a:1b1b1b1b:2c2c2c2c:3d3d3d3d"


@pytest.fixture(autouse=True)
def fixed_uuid(monkeypatch):
    monkeypatch.setattr(DegradedRaid1, "new_uuid", staticmethod(lambda: UUID))


def test_raid1_partition_argv(world, spec):
    stack = world.stack()
    md = f"/dev/md/snaplayers-{ids('lvm=data0+vol00,raid1')}"
    node = "/dev/md127"             # the kernel's node, which the layers above are given
    mapping = f"snaplayers-{ids('lvm=data0+vol00,raid1,part=1')}-2p1"
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
        ["mdadm", "--detail", "--export", md],
        ["mdadm", "--assemble", md, "--run", "--update=uuid", f"--uuid={UUID}",
         "/dev/mapper/data0-vol00.amsnap"],
        ["mdadm", "--detail", "--export", md],
        ["partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", "--nr", "1", node],
        ["blockdev", "--getsz", node],
        ["dmsetup", "create", mapping, "--table", f"0 524288 linear {node} 2048"],
        ["dmsetup", "mknodes", mapping],
        ["blkid", "--probe", "--output", "export", f"/dev/mapper/{mapping}"],
        ["mkdir", mp],
        ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", f"/dev/mapper/{mapping}", mp],
    ]
    assert cmds[n:] == [
        ["umount", mp],
        ["rmdir", mp],
        ["dmsetup", "table", mapping],
        ["dmsetup", "remove", "--retry", mapping],
        ["dmsetup", "mknodes", mapping],
        ["mdadm", "--detail", "--export", md],
        ["mdadm", "--stop", md],
        ["rm", "-f", "--", md],
        LVS + ["data0/vol00.amsnap"],
        ["lvremove", "--yes", "data0/vol00.amsnap"],
    ]
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}


def test_lv_partition_argv(world, spec):
    stack = world.stack("vol01")
    mapping = f"snaplayers-{ids('lvm=data0+vol01,part=2')}-1p2"
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
    assert world.commands()[-1] == ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec",
                                    "/dev/mapper/data0-vol02.amsnap", "/v/amsnap/lvm=data0+vol02"]


def test_thin_origin_needs_no_size(world, spec):
    world.system.add_lv("data0", "thin0", attr="Vwi-aotz--", segtype="thin")
    world.stack("thin0").setup(spec("lvm=data0+thin0"))
    assert world.commands()[2] == ["lvcreate", "--snapshot", "--name", "thin0.amsnap",
                                   "--setactivationskip", "n", "data0/thin0"]


@pytest.mark.parametrize("fstype,replay,no_replay", [
    ("ext4", "ro,nosuid,nodev,noexec", "ro,nosuid,nodev,noexec,noload"),
    ("ext3", "ro,nosuid,nodev,noexec", "ro,nosuid,nodev,noexec,noload"),
    ("ext2", "ro,nosuid,nodev,noexec", "ro,nosuid,nodev,noexec"),
    ("xfs", "ro,nosuid,nodev,noexec,nouuid", "ro,nosuid,nodev,noexec,nouuid,norecovery")])
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


# -- the guest's LVM (vg=) and LUKS (luks=) -------------------------------------------------

def _guest_lvm(argv):
    return [argv[0], *argv[3:]] if argv[1:2] == ["--config"] else argv


def test_guest_vg_is_renamed_in_the_snapshot_before_anything_is_activated(world, spec):
    from snaplayers.layers.vg import lvm_config
    stack = world.stack("vol05")
    world.system.guest = ("data0", ["root", "swap"])    # the host's own VG name, inside the guest
    pv = f"/dev/mapper/snaplayers-{ids('lvm=data0+vol05,raid1,part=3')}-2p3"
    clone = f"snaplayers_{ids('lvm=data0+vol05,raid1,part=3,vg=data0+root')}"
    mp = "/v/amsnap/lvm=data0+vol05,raid1,part=3,vg=data0+root"
    assert stack.setup(spec("lvm=data0+vol05,raid1,part=3,vg=data0+root")) == mp
    n = len(world.runner.executed)
    stack.teardown()
    cmds = world.commands()
    guest = [c for c in cmds if c[0] in ("pvs", "vgimportclone", "lvchange", "vgchange")
             or c[1:2] == ["--config"]]
    # every LVM command on the guest's VG sees the snapshot's device alone
    assert all(c[1:3] == ["--config", lvm_config(pv)] for c in guest)
    assert '"a|^/dev/mapper/snaplayers-' in lvm_config(pv) and '"r|.*|"' in lvm_config(pv)
    fields = ["--noheadings", "--nameprefixes", "-o"]
    assert [_guest_lvm(c) for c in cmds[:n] if c in guest] == [
        ["pvs", *fields, "pv_name,vg_name,vg_uuid,pv_count", pv],
        ["vgimportclone", "--basevgname", clone, pv],
        ["pvs", *fields, "pv_name,vg_name,vg_uuid,pv_count", pv],
        ["lvs", *fields, "lv_name,lv_attr,vg_uuid", clone],
        ["lvchange", "--activate", "y", f"{clone}/root"],
        ["lvs", *fields, "lv_name,lv_attr,vg_uuid", clone],
    ]
    assert cmds[n - 1] == ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", f"/dev/mapper/{clone}-root", mp]
    assert [_guest_lvm(c) for c in cmds[n:] if c in guest] == [
        ["lvs", *fields, "lv_name,lv_attr,vg_uuid", clone],
        ["vgchange", "--activate", "n", clone],
    ]
    # the guest's own name is never activated or changed: only the renamed copy is
    assert not any(a in ("data0", "data0/root") for c in guest for a in c[3:])
    assert world.kernel_objects()["mappings"] == {}


@pytest.mark.parametrize("guest,layers,message", [
    (("other", ["root"]), "vg=data0+root", "belongs to volume group other, not data0"),
    (("data0", ["home"]), "vg=data0+root", "has no LV root (it has: home)"),
])
def test_unknown_guest_vg_or_lv_is_reported_and_nothing_is_left(world, spec, guest, layers, message):
    from snaplayers.errors import LayerError
    world.system.guest = guest
    with pytest.raises(LayerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        world.stack().setup(spec(f"lvm=data0+vol00,raid1,part=1,{layers}"))
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [],
                                      "dirs": []}
    assert not any(c[0] == "lvchange" for c in world.commands())


def test_guest_vg_spread_over_several_pvs_is_refused_before_it_is_renamed(world, spec):
    from snaplayers.errors import LayerError
    world.system.pvs["/dev/mapper/data0-vol00.amsnap"] = {
        "pv_name": "/dev/mapper/data0-vol00.amsnap", "vg_name": "vg0", "vg_uuid": "u", "pv_count": "2"}
    with pytest.raises(LayerError, match="spans 2 PVs"):
        world.stack().setup(spec("lvm=data0+vol00,vg=vg0+root"))
    assert not any(c[0] == "vgimportclone" for c in world.commands())


def test_a_device_without_a_pv_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.permissive = False
    world.system.add_lv("data0", "vol00")
    with pytest.raises(LayerError, match="holds no LVM physical volume"):
        world.stack().setup(spec("lvm=data0+vol00,vg=vg0+root"))


def test_luks_argv_key_file_from_the_key_dir(tmp_path, spec):
    from conftest import World
    world = World(tmp_path, key_dir="/etc/keys")
    stack = world.stack("vol06")
    part = f"/dev/mapper/snaplayers-{ids('lvm=data0+vol06,raid1,part=1')}-2p1"
    crypt = f"snaplayers-{ids('lvm=data0+vol06,raid1,part=1,luks=vm6')}-3c"
    mp = "/v/amsnap/lvm=data0+vol06,raid1,part=1,luks=vm6"
    stack.setup(spec("lvm=data0+vol06,raid1,part=1,luks=vm6"))
    n = len(world.runner.executed)
    stack.teardown()
    cmds = world.commands()
    assert [c for c in cmds[:n] if c[0] == "cryptsetup" or c[-1] == crypt] == [
        ["cryptsetup", "isLuks", part],
        ["cryptsetup", "status", crypt],
        ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/keys/vm6.key", part, crypt],
        ["dmsetup", "mknodes", crypt],
        ["cryptsetup", "status", crypt],
    ]
    assert cmds[n - 1] == ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", f"/dev/mapper/{crypt}", mp]
    assert cmds[n:n + 5] == [["umount", mp], ["rmdir", mp], ["cryptsetup", "status", crypt],
                             ["cryptsetup", "close", crypt], ["dmsetup", "mknodes", crypt]]
    # dmsetup table prints a LUKS1 key: never run on the crypt mapping
    assert ["dmsetup", "table", crypt] not in cmds
    assert world.kernel_objects()["mappings"] == {}


def test_wrong_key_is_reported_and_nothing_is_left(world, spec):
    from snaplayers.errors import LayerError
    stack = world.stack()
    world.system.luks[f"/dev/mapper/snaplayers-{ids('lvm=data0+vol00,raid1,part=1')}-2p1"] = "/etc/snaplayers/keys/right.key"
    with pytest.raises(LayerError, match=r"luks=wrong: key file /etc/snaplayers/keys/wrong.key does "
                                         r"not open .* \(wrong key\)"):
        stack.setup(spec("lvm=data0+vol00,raid1,part=1,luks=wrong"))
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [],
                                      "dirs": []}


def test_a_device_without_luks_is_refused(world, spec):
    from snaplayers.errors import LayerError
    world.system.permissive = False
    world.system.add_lv("data0", "vol00")
    with pytest.raises(LayerError, match="holds no LUKS header"):
        world.stack().setup(spec("lvm=data0+vol00,luks=k"))
    assert not any(c[:2] == ["cryptsetup", "open"] for c in world.commands())


def test_an_open_mapping_under_our_name_is_neither_reused_nor_closed(world, spec):
    from snaplayers.errors import LayerError
    stack = world.stack()
    crypt = f"snaplayers-{ids('lvm=data0+vol00,luks=k')}-1c"
    world.system.crypts[crypt] = "/dev/sdz"
    with pytest.raises(LayerError, match="not recorded by snaplayers"):
        stack.setup(spec("lvm=data0+vol00,luks=k"))
    assert world.system.crypts == {crypt: "/dev/sdz"}
    assert world.kernel_objects()["lvs"] == []


def test_teardown_refuses_a_guest_vg_or_luks_mapping_that_is_not_the_one_made(world, spec):
    from snaplayers.errors import LayerError
    stack = world.stack()
    stack.setup(spec("lvm=data0+vol00,raid1,part=1,vg=vg0+root,luks=k"))
    crypt = f"snaplayers-{ids('lvm=data0+vol00,raid1,part=1,vg=vg0+root,luks=k')}-4c"
    world.system.crypts[crypt] = "/dev/sdz"             # someone reopened our name elsewhere
    with pytest.raises(LayerError, match="not closing it"):
        stack.teardown()
    assert crypt in world.system.crypts
    world.system.crypts.pop(crypt)
    clone = f"snaplayers_{ids('lvm=data0+vol00,raid1,part=1,vg=vg0+root')}"
    pv = next(p for p in world.system.pvs.values() if p["vg_name"] == clone)
    pv["vg_uuid"] = "someone-elses"
    with pytest.raises(LayerError, match="not deactivating it"):
        stack.teardown()
    assert world.system.guest_lvs[clone]["root"] is True


def test_btrfs_is_not_mounted(world, spec):
    """A multi-device btrfs is assembled by fsid from whatever the host sees (an origin LV too)
    and its log replay writes there: not offered, one line, nothing left."""
    from snaplayers.errors import LayerError
    world.system.fstype = "btrfs"
    with pytest.raises(LayerError, match="holds btrfs; supported: ext2, ext3, ext4, xfs"):
        world.stack().setup(spec("lvm=data0+vol02"))
    assert not any(a[0] == "mount" for a in world.commands())
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}


@pytest.mark.parametrize("size,free,fits", [
    ("20%ORIGIN", 204 * 2**20, False),          # 204.8 MiB: 52 extents of 4 MiB
    ("20%ORIGIN", 208 * 2**20, True),
    ("1.5G", 1536 * 2**20 - 1, False), ("1.5G", 1536 * 2**20, True),
    ("300", 296 * 2**20, False),                # LVM's default unit, MiB: 75 extents
    ("4096k", 4 * 2**20, True), ("8193s", 4 * 2**20, False),
])
def test_no_room_in_the_vg_is_one_line_before_anything_is_made(tmp_path, spec, size, free, fits):
    from conftest import World
    from snaplayers.errors import LayerError
    world = World(tmp_path, size=size)
    world.system.add_lv("data0", "vol02")
    world.system.lvs["data0/vol02"]["vg_free"] = f"{free}B"
    stack = world.stack("vol02")
    if fits:
        stack.setup(spec("lvm=data0+vol02"))
        assert ["lvcreate"] == [c[0] for c in world.commands() if c[0] == "lvcreate"]
        return
    with pytest.raises(LayerError, match=rf"^lvm=data0\+vol02: volume group data0 has {free / 2**20:.1f} MiB "
                                         rf"free; the snapshot of vol02 at size {size} needs \d+\.\d MiB: "):
        stack.setup(spec("lvm=data0+vol02"))
    assert world.commands() == [LVS + ["data0/vol02"]]
    assert world.kernel_objects() == {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}
    assert stack.journal.load() is None
