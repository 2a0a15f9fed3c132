"""The plugin's value classes (snaplayers/record.py) behave as frozen and plain dataclasses would."""

import pytest

from snaplayers.device import DeviceSpec, Lvm, Part, Vg, parse
from snaplayers.props import Call, Settings
from snaplayers.run import Result


def test_equal_means_same_class_and_fields_and_frozen_ones_are_hashable():
    assert Lvm("data0", "vol00") == Lvm(vg="data0", lv="vol00")
    assert Lvm("data0", "vol00") != Vg("data0", "vol00")     # same fields, another layer
    assert len({Part(1), Part(1), Part(2)}) == 2
    spec = parse("/v/amsnap/lvm=data0+vol00,raid1,part=1", "/v/amsnap")
    assert spec == DeviceSpec("/v/amsnap", spec.layers) and hash(spec) == hash(DeviceSpec("/v/amsnap", spec.layers))
    assert repr(Part(3)) == "Part(number=3)"
    with pytest.raises(AttributeError):
        Part(1).number = 2
    with pytest.raises(TypeError):
        hash(Result(["true"], 0, "", ""))                     # mutable: not hashable


def test_defaults_are_per_instance_and_a_missing_field_is_an_error():
    a, b = Call("PRE-DLE-BACKUP"), Call("PRE-DLE-BACKUP")
    a.levels.append(0)
    a.properties["size"] = "1G"
    assert b.levels == [] and b.properties == {}
    assert Settings(mount_base="/v/amsnap").as_dict()["sudo"] == "auto"
    with pytest.raises(TypeError, match="missing field 'mount_base'"):
        Settings()
    with pytest.raises(TypeError, match="unexpected or repeated field 'nosuch'"):
        Part(number=1, nosuch=2)
