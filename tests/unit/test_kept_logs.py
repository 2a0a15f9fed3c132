"""A failed end-to-end test keeps Amanda's logs on the host (the testbed is destroyed after it).
The docker side is faked here; `make matrix` keeps a failed cell's logs for real."""

import io
import os
import tarfile

import docker.errors
import pytest

from testbed.amanda import Amanda
from testbed.fixture.topology import default


def archive(top: str, files: dict) -> list:
    """What docker's get_archive streams: a tar whose top entry is the path's last name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.uid = len(text), 390
            tar.addfile(info, io.BytesIO(text.encode()))
    data = buf.getvalue()
    return [data[:100], data[100:]]                 # in chunks, as docker sends it


class Container:
    def __init__(self, trees):
        self.trees = trees

    def get_archive(self, path):
        if path not in self.trees:
            raise docker.errors.NotFound(f"Could not find the file {path} in container")
        return archive(os.path.basename(path), self.trees[path]), {}


class FakeTestbed:
    def __init__(self, containers):
        self.topo = default("sltbunit")
        self.prefix = self.topo.prefix
        self.containers = containers
        self.execs = []
        self.client = self

    def get(self, name):
        return self.containers[name]

    def exec(self, node, argv, **kw):
        self.execs.append((node, argv))
        return ""


def test_both_nodes_logs_processes_and_kernel_messages_are_kept(tmp_path):
    topo = default("sltbunit")
    tb = FakeTestbed({
        topo.container("amanda"): Container({
            "/var/log/amanda": {"server/TB/driver.20261126.debug": "driver: hung?\n"},
            "/srv/amanda/TB/state/log": {"amdump.1": "driver: part-xfs\n"},
            "/srv/amanda/TBOVERFLOW/state/log": {"amdump.1": "driver: lv-ext4\n"},
            "/tmp/testbed-ps.txt": {}, "/tmp/testbed-dmesg.txt": {}}),
        topo.container("storage0"): Container({
            "/var/log/amanda": {"client/TB/sendbackup.20261126.debug": "sendbackup: part-xfs\n"}})})
    kept = Amanda(tb, str(tmp_path)).keep_logs("test_level1")
    assert kept.startswith(str(tmp_path / "sltbunit-test_level1-"))
    found = sorted(os.path.relpath(os.path.join(d, f), kept) for d, _, fs in os.walk(kept) for f in fs)
    # each config's run logs in their own folder (the failed test may have used any of them)
    assert found == ["amanda/TB/log/amdump.1", "amanda/TBOVERFLOW/log/amdump.1",
                     "amanda/amanda/server/TB/driver.20261126.debug",
                     "storage0/amanda/client/TB/sendbackup.20261126.debug"]
    assert open(os.path.join(kept, "amanda/TBOVERFLOW/log/amdump.1")).read() == "driver: lv-ext4\n"
    # a hang shows in what still runs, not in a log: each node lists it before the copy
    assert [n for n, argv in tb.execs if "ps -eo" in argv[-1] and "dmesg" in argv[-1]] == ["amanda", "storage0"]


class Unreachable(Container):
    def get_archive(self, path):
        raise docker.errors.APIError("500 Server Error: engine gone")


def test_an_engine_that_fails_is_an_error_not_a_missing_log(tmp_path):
    topo = default("sltbunit")
    tb = FakeTestbed({topo.container("amanda"): Unreachable({}), topo.container("storage0"): Unreachable({})})
    with pytest.raises(docker.errors.APIError):
        Amanda(tb, str(tmp_path)).keep_logs("test_level1")
