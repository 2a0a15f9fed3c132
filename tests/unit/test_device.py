"""The device field grammar: accept/reject tables and a property-based round trip."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snaplayers.device import Luks, Lvm, Part, Raid1, Vg, parse
from snaplayers.errors import BadInput

BASE = "/v/amsnap"

VALID = {
    "lvm=data0+vol00,raid1,part=1": (Lvm("data0", "vol00"), Raid1(), Part(1)),
    "lvm=data0+vol01,part=2": (Lvm("data0", "vol01"), Part(2)),
    "lvm=data0+vol02": (Lvm("data0", "vol02"),),
    "lvm=data0+vol03,raid1": (Lvm("data0", "vol03"), Raid1()),
    "lvm=vg_1.x+lv-2_a,part=128": (Lvm("vg_1.x", "lv-2_a"), Part(128)),
    "lvm=data0+vol04,part=2,raid1,part=1": (Lvm("data0", "vol04"), Part(2), Raid1(), Part(1)),
    "lvm=data0+vol05,part=1,raid1,part=1": (Lvm("data0", "vol05"), Part(1), Raid1(), Part(1)),
    # the guest's own LVM and LUKS, in the orders real VMs use
    "lvm=data0+vol06,raid1,part=3,vg=data0+root": (Lvm("data0", "vol06"), Raid1(), Part(3),
                                                   Vg("data0", "root")),
    "lvm=data0+vol07,raid1,part=1,luks=vm7": (Lvm("data0", "vol07"), Raid1(), Part(1), Luks("vm7")),
    "lvm=data0+vol08,part=2,luks=k.2,vg=vg-x+home": (Lvm("data0", "vol08"), Part(2), Luks("k.2"),
                                                     Vg("vg-x", "home")),
    "lvm=data0+vol09,vg=guest+lv,luks=key_1": (Lvm("data0", "vol09"), Vg("guest", "lv"),
                                               Luks("key_1")),
    "lvm=data0+vol10,raid1,vg=a+b,part=1": (Lvm("data0", "vol10"), Raid1(), Vg("a", "b"), Part(1)),
}


@pytest.mark.parametrize("layers", sorted(VALID))
def test_valid_devices_parse_and_round_trip(layers):
    for device in (f"{BASE}/{layers}", f"{BASE}/{layers}/"):
        spec = parse(device, BASE)
        assert spec.layers == VALID[layers]
        assert spec.format() == device
        assert spec.mountpoint == f"{BASE}/{layers}"


def test_mount_base_defaults_to_the_parent_directory():
    assert parse("/srv/snaps/lvm=a+b").mount_base == "/srv/snaps"


# (device, a word the one-line error must contain)
INVALID = [
    ("", "empty"),
    (f"{BASE}/", "names no layers"),
    (f"{BASE}/raid1", "first"),
    (f"{BASE}/part=1,lvm=a+b", "first"),
    (f"{BASE}/lvm=a+b,lvm=a+c", "only one source"),
    (f"{BASE}/lvm=a+b,raid1,raid1", "duplicate"),
    (f"{BASE}/lvm=a+b,part=1,part=2", "duplicate"),
    (f"{BASE}/lvm=a+b,raid1,part=1,raid1", "duplicate"),
    (f"{BASE}/lvm=a+b,,raid1", "empty"),
    (f"{BASE}/lvm=a+b,", "empty"),
    (f"{BASE}/lvm=a+b,part=0", "1..128"),
    (f"{BASE}/lvm=a+b,part=129", "1..128"),
    (f"{BASE}/lvm=a+b,part=01", "1..128"),
    (f"{BASE}/lvm=a+b,part=99999999999999999999", "1..128"),
    (f"{BASE}/lvm=a+b,part=-1", "1..128"),
    (f"{BASE}/lvm=a+b,part=", "1..128"),
    (f"{BASE}/lvm=a+b,raid5", "unknown layer"),
    (f"{BASE}/lvm=a+b,lukz=x", "unknown layer"),
    (f"{BASE}/vg=a+b", "first"),
    (f"{BASE}/lvm=a+b,vg=a", "vg=<vg>+<lv>"),
    (f"{BASE}/lvm=a+b,vg=a+b,vg=c+d", "duplicate"),
    (f"{BASE}/lvm=a+b,vg=a+b,part=1,vg=c+d", "one guest VG"),
    (f"{BASE}/lvm=a+b,vg=a+b_rimage", "reserved"),
    (f"{BASE}/lvm=a+b,vg=-a+b", "name rules"),
    (f"{BASE}/lvm=a+b,luks=x,luks=y", "duplicate"),
    (f"{BASE}/lvm=a+b,luks=", "key name"),
    (f"{BASE}/lvm=a+b,luks=.hidden", "key name"),
    (f"{BASE}/lvm=a+b,luks=-x", "key name"),
    (f"{BASE}/lvm=a+b,luks=a+b", "key name"),
    (f"{BASE}/lvm=a+b,luks=" + "k" * 65, "key name"),
    (f"{BASE}/lvm=a+b,luks=$(id)", "key name"),
    (f"{BASE}/lvm=ab", "lvm=<vg>+<lv>"),
    (f"{BASE}/lvm=+b", "empty VG"),
    (f"{BASE}/lvm=a+", "empty LV"),
    (f"{BASE}/lvm=a+b+c", "'+'"),
    (f"{BASE}/lvm=-a+b", "name rules"),
    (f"{BASE}/lvm=a+-b", "name rules"),
    (f"{BASE}/lvm=..+b", "name rules"),
    (f"{BASE}/lvm=a+.", "name rules"),
    (f"{BASE}/lvm=a+b_mlog", "reserved"),
    (f"{BASE}/lvm=a+snapshot0", "reserved"),
    (f"{BASE}/lvm=a+b/../x", "single directory"),
    (f"{BASE}/../etc/lvm=a+b", "single directory"),
    ("/v/./amsnap/lvm=a+b", "does not start"),
    ("/v/other/lvm=a+b", "does not start with mount base"),
    (f"{BASE}x/lvm=a+b", "does not start with mount base"),
    ("relative/lvm=a+b", "does not start"),
    (f"{BASE}/lvm=a+b;reboot", "name rules"),
    (f"{BASE}/lvm=a+b$(id)", "name rules"),
    (f"{BASE}/lvm=a+b`id`", "name rules"),
    (f"{BASE}/lvm=a+b|x", "name rules"),
    (f"{BASE}/lvm=a+b\nraid1", "non-printable"),
    (f"{BASE}/lvm=a+b\x00", "non-printable"),
    (f"{BASE}/lvm=a+bé", "non-ASCII"),
    (f"{BASE}/lvm=a+" + "b" * 128, "longer than 127"),
    (f"{BASE}/lvm=a+b" + ",raid1,part=1" * 30, "duplicate"),
]


@pytest.mark.parametrize("device,word", INVALID)
def test_invalid_devices_are_rejected_with_one_line(device, word):
    with pytest.raises(BadInput) as err:
        parse(device, BASE)
    message = str(err.value)
    assert word in message
    assert "\n" not in message and len(message) < 400


names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda n: not n.startswith(("snapshot", "pvmove")) and "_m" not in n and "_r" not in n
    and "_c" not in n and "_t" not in n and "_v" not in n and "_p" not in n)
upper = st.lists(st.sampled_from(["raid1"]) | st.integers(1, 128).map(lambda n: f"part={n}")
                 | st.tuples(names, names).map(lambda p: f"vg={p[0]}+{p[1]}")
                 | st.from_regex(r"luks=[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True),
                 max_size=4)


def _valid_chain(tokens):
    kinds = [t.split("=")[0] for t in tokens]
    return (all(a != b for a, b in zip(["lvm"] + kinds, kinds)) and kinds.count("raid1") <= 1
            and kinds.count("vg") <= 1)


@settings(max_examples=300, deadline=None)
@given(vg=names, lv=names, tokens=upper.filter(_valid_chain), slash=st.booleans())
def test_round_trip_for_every_valid_device(vg, lv, tokens, slash):
    device = f"{BASE}/" + ",".join([f"lvm={vg}+{lv}"] + tokens) + ("/" if slash else "")
    spec = parse(device, BASE)
    assert spec.format() == device
    assert parse(spec.format(), BASE) == spec


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_any_text_parses_or_is_rejected_cleanly(text):
    for device in (text, f"{BASE}/{text}"):
        try:
            spec = parse(device, BASE)
        except BadInput as err:
            assert "\n" not in str(err)
        else:
            assert spec.format() == device


def test_relative_mount_base_is_rejected():
    with pytest.raises(BadInput, match="absolute path"):
        parse("relative/lvm=a+b")
