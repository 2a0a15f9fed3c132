"""Thin origins: the snapshot's checks follow what real LVM reports for thin LVs (measured on
the testbed, tests/integration/test_thin_on_the_fixture.py): Data% 100 is a thin LV's normal state once its
origin was written whole; only a failed pool means the snapshot may not read as it was taken."""

import logging

import pytest

from snaplayers.errors import SnapshotInvalid

LVS = ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
       "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size"]
EMPTY = {"lvs": [], "arrays": {}, "mappings": {}, "mounts": [], "dirs": []}


@pytest.fixture
def thin(world, spec):
    world.system.add_thin_lv("data0", "thin0")
    world.stack("thin0").setup(spec("lvm=data0+thin0"))
    snap = world.system.lvs["data0/thin0.amsnap"]
    assert (snap["data_percent"], snap["pool_lv"], snap["segtype"]) == ("100.00", "pool0", "thin")
    return world


def test_a_thin_snapshot_at_data_100_is_a_good_dump(thin):
    assert thin.stack("thin0").teardown() is True
    assert thin.commands()[-3:] == [LVS + ["data0/thin0.amsnap"], ["lvremove", "--yes", "data0/thin0.amsnap"],
                                   LVS + ["data0/pool0"]]
    assert thin.kernel_objects() == EMPTY


def test_a_pool_out_of_data_space_leaves_the_snapshot_whole(thin, caplog):
    caplog.set_level(logging.INFO, logger="snaplayers")
    thin.system.lvs["data0/pool0"].update(lv_attr="twi-aotzD-", data_percent="100.00")
    assert thin.stack("thin0").teardown() is True
    assert thin.kernel_objects() == EMPTY
    assert "thin pool data0/pool0 is out of data space" in caplog.text


@pytest.mark.parametrize("lv,attr", [("pool0", "twi-aotzF-"), ("pool0", "twi-aotzM-"),
                                     ("pool0", "twi-aotzX-"), ("thin0.amsnap", "Vwi-a-tzF-")])
def test_a_failed_pool_fails_the_dump_and_everything_goes(thin, lv, attr):
    thin.system.lvs[f"data0/{lv}"]["lv_attr"] = attr
    with pytest.raises(SnapshotInvalid, match=rf"thin snapshot data0/thin0.amsnap: data0/{lv} lv_attr {attr} "):
        thin.stack("thin0").teardown()
    assert thin.kernel_objects() == EMPTY
    assert thin.stack("thin0").journal.load() is None


@pytest.mark.parametrize("pool", [None, "plain"])
def test_a_pool_gone_or_no_pool_fails_the_dump(thin, pool):
    if pool is None:
        thin.system.lvs["data0/thin0.amsnap"]["pool_lv"] = ""
    else:
        thin.system.lvs["data0/pool0"].update(segtype="linear", lv_attr="-wi-a-----")
    with pytest.raises(SnapshotInvalid, match=r"its pool data0/(\?|pool0) is gone or is no thin pool"):
        thin.stack("thin0").teardown()
    assert thin.kernel_objects() == EMPTY


def test_a_classic_snapshot_at_100_is_still_an_overflow(world, spec):
    world.stack().setup(spec("lvm=data0+vol00"))
    world.system.lvs["data0/vol00.amsnap"]["data_percent"] = "100.00"
    with pytest.raises(SnapshotInvalid, match="overflowed"):
        world.stack().teardown()
