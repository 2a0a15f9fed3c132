import pytest

from snaplayers import amanda, tools

from snaplayers.device import parse
from snaplayers.layers import Context, node_id
from snaplayers.props import Settings
from snaplayers.stack import Stack, dle_id

from simhost import SteeredSystem

BASE = "/v/amsnap"


def node(path, suffix=".amsnap"):
    """The id in the names of the last layer of `path`: the same for every DLE that reads
    through those layers (the snapshot's name, then each token above it)."""
    source, *above = path.split(",")
    vg, lv = source.removeprefix("lvm=").split("+")
    return node_id(",".join([f"{vg}/{lv}{suffix}", *above]))


class World:
    """A simulated storage host plus a stack for one DLE on it."""

    def __init__(self, tmp_path, permissive=True, **settings):
        self.system = SteeredSystem(permissive=permissive)
        self.system.add_dir(BASE)
        self.state_dir = str(tmp_path / "state")
        self.settings = Settings(mount_base=BASE, state_dir=self.state_dir,
                                 log_dir=str(tmp_path / "log"), **settings)
        self.runner = self.system.runner()

    def stack(self, disk="vol00"):
        ctx = Context(self.runner, self.system, self.settings, dle_id("TB", "storage0", disk))
        return Stack(ctx, "TB", "storage0", disk)

    def commands(self):
        """The executed argv, tool basenames only."""
        return [[a.rsplit("/", 1)[-1] if i == 0 else a for i, a in enumerate(argv)]
                for argv in self.runner.executed]

    def kernel_objects(self):
        s = self.system
        # dm mappings of every kind: partitions, open LUKS containers, active guest LVs
        mappings = {**s.mappings, **{name: "crypt" for name in s.crypts},
                    **{f"{vg}/{lv}": "guest LV" for vg, lvs in s.guest_lvs.items()
                       for lv, active in lvs.items() if active}}
        return {"lvs": [n for n in s.lvs if n.endswith(".amsnap")], "arrays": dict(s.arrays),
                "mappings": mappings, "mounts": s.mounts(),
                "dirs": sorted(d for d in s.dirs if d.startswith(BASE + "/"))}


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def spec():
    return lambda layers: parse(f"{BASE}/{layers}", BASE)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Runs amanda.main() against a simulated host; returns its exit status. Groups are read
    from call.groups (none there: no groups), never from this machine's /etc."""
    system = SteeredSystem()
    system.add_dir(BASE)
    runner = system.runner()
    real = amanda.environment

    def environment(settings):      # the simulated host, with the runner real settings make
        runner.debug = real(settings)[0].debug
        return runner, system
    monkeypatch.setattr(amanda, "environment", environment)
    monkeypatch.setattr(tools, "check", lambda needed: None)
    state, logs, groups = tmp_path / "state", tmp_path / "log", tmp_path / "groups"

    def call(*argv, props=True):
        extra = ["--mount-base", BASE, "--state-dir", str(state), "--log-dir", str(logs),
                 "--groups", str(groups)] if props else []
        rc = amanda.main(list(argv) + extra)
        return rc
    call.system, call.runner, call.state, call.logs, call.groups = system, runner, state, logs, groups
    return call
