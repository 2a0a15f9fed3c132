"""`snaplayers plan`: the argv an Amanda call runs, with placeholders for what only a real run knows."""

import re
import shlex

import pytest

from snaplayers import amanda, cli, tools
from snaplayers.device import parse

from conftest import node
from simhost import SteeredSystem

BASE = "/v/amsnap"
PLACEHOLDER = re.compile(r"(<[a-z ]+>)")
MADE_UP = ("<fresh uuid>", "<md node>", "<partition start>", "<partition sectors>")


def plan(capsys, *argv):
    assert cli.main(["plan", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    split = lines.index("# tear-down")
    assert lines[0].startswith("# set-up")
    return lines[1:split], lines[split + 1:]


def test_what_only_a_run_knows_is_a_placeholder(capsys):
    setup, teardown = plan(capsys, "--device", f"{BASE}/lvm=data0+vol00,raid1,part=1")
    text = "\n".join(setup + teardown)
    assert set(PLACEHOLDER.findall(text)) == set(MADE_UP)
    assert "--uuid=<fresh uuid> " in text
    assert "--table '0 <partition sectors> linear <md node> <partition start>'" in text
    assert f"/dev/md/snaplayers-{node('lvm=data0+vol00,raid1')} " in text and "/dev/md1" not in text
    assert not re.search(r"[0-9a-f]{8}:[0-9a-f]{8}", text)       # no UUID made up here


def test_a_value_the_operator_gave_is_not_taken_for_a_made_up_one(capsys):
    # partition 3 starts at sector 6144 on the simulated host: the size given before is the user's
    setup, _ = plan(capsys, "--device", f"{BASE}/lvm=data0+vol00,part=3", "--size", "6144")
    assert any(line.endswith("--size 6144 data0/vol00") for line in setup)
    assert any("linear /dev/mapper/data0-vol00.amsnap <partition start>'" in line for line in setup)


def test_names_are_those_amandas_calls_make_for_the_dle(capsys, tmp_path, monkeypatch):
    """The plan for config/host/disk, placeholders read as 'any word', is the argv sequence the
    plugin's PRE-DLE-BACKUP and POST-DLE-BACKUP calls run for that DLE."""
    device = f"{BASE}/lvm=data0+vol06,part=2,raid1,part=3,vg=data0+root,luks=vm7"
    ident = ["--config", "daily", "--host", "storage0", "--disk", "vol06"]
    setup, teardown = plan(capsys, "--device", device, *ident)
    assert f"/dev/md/snaplayers-{node('lvm=data0+vol06,part=2,raid1')}" in "\n".join(setup)

    system = SteeredSystem()
    system.add_dir(BASE)
    system.expect(parse(device, BASE))      # the guest VG the device field names
    runner = system.runner()
    monkeypatch.setattr(amanda, "environment", lambda settings: (runner, system))
    monkeypatch.setattr(tools, "check", lambda needed: None)
    props = ["--mount-base", BASE, "--state-dir", str(tmp_path / "s"), "--log-dir", str(tmp_path / "l")]
    assert amanda.main(["PRE-DLE-BACKUP", "--device", device, *ident, *props]) == 0
    n = len(runner.executed)
    assert amanda.main(["POST-DLE-BACKUP", "--device", device, *ident, *props]) == 0
    capsys.readouterr()
    ran = [shlex.join(argv) for argv in runner.executed]
    assert len(ran) == len(setup) + len(teardown) and n == len(setup)
    for shown, argv in zip(setup + teardown, ran):
        pattern = "".join("[^ ']+" if PLACEHOLDER.fullmatch(part) else re.escape(part)
                          for part in PLACEHOLDER.split(shown))
        assert re.fullmatch(pattern, argv), (shown, argv)


@pytest.mark.parametrize("given", [["--config", "daily"], ["--host", "storage0", "--disk", "d"]])
def test_names_are_the_layers_own_whichever_dle_reads_them(capsys, given):
    """Every DLE that reads through the same layers names (and so finds and shares) the same
    kernel objects: config, host and disk name only the DLE's journal."""
    anyone = plan(capsys, "--device", f"{BASE}/lvm=data0+vol00,raid1")
    assert plan(capsys, "--device", f"{BASE}/lvm=data0+vol00,raid1", *given) == anyone
    assert f"/usr/sbin/mdadm --stop /dev/md/snaplayers-{node('lvm=data0+vol00,raid1')}" in anyone[1]


def test_a_thin_origin_is_snapshotted_without_a_size(capsys):
    setup, _ = plan(capsys, "--device", f"{BASE}/lvm=data0+vol02", "--thin")
    assert "/usr/sbin/lvcreate --snapshot --name vol02.amsnap --setactivationskip n data0/vol02" in setup
