"""testbed's settings: read once from TESTBED_* (and the command line), given to child runs."""

import json
import subprocess
import sys

import pytest

from testbed.config import SOURCE_MIRRORS, Config
from testbed.run import TestbedError


def test_nothing_set_gives_the_defaults():
    c = Config.from_env({})
    assert (c.kernel, c.suite, c.layout, c.engine, c.accel, c.mirror) == ("6.1", "bookworm", "debian", "", "", "")
    assert c.source_mirrors == SOURCE_MIRRORS and c.vm_memory == 4096
    assert (c.logs, c.shared, c.cell_report) == ("", False, "")


def test_every_variable_is_read():
    c = Config.from_env({
        "TESTBED_KERNEL": "6.12", "TESTBED_SUITE": "trixie", "TESTBED_LAYOUT": "zmanda",
        "TESTBED_ENGINE": "vm", "TESTBED_ACCEL": "tcg", "TESTBED_MIRROR": "http://m/debian",
        "TESTBED_SOURCE_MIRRORS": "http://a/pool  http://b/pool", "TESTBED_VM_MEMORY": "6144",
        "TESTBED_LOGS": "/tmp/logs", "TESTBED_SHARED": "1", "TESTBED_CELL_REPORT": "/tmp/r.json"})
    assert c == Config("6.12", "trixie", "zmanda", "vm", "tcg", "http://m/debian",
                       ("http://a/pool", "http://b/pool"), 6144, "/tmp/logs", True, "/tmp/r.json")


def test_the_command_line_wins_over_the_environment():
    c = Config.from_env({"TESTBED_KERNEL": "6.12", "TESTBED_SUITE": "trixie"}, kernel="6.1")
    assert (c.kernel, c.suite) == ("6.1", "trixie")


def test_shared_only_when_1():
    assert not Config.from_env({"TESTBED_SHARED": "yes"}).shared


def test_source_mirrors_set_but_empty_means_none():
    assert Config.from_env({"TESTBED_SOURCE_MIRRORS": ""}).source_mirrors == ()


def test_a_memory_that_is_no_number_is_an_error_naming_the_variable():
    with pytest.raises(TestbedError, match="TESTBED_VM_MEMORY='4G'"):
        Config.from_env({"TESTBED_VM_MEMORY": "4G"})


@pytest.mark.parametrize("env", [{}, {"TESTBED_SOURCE_MIRRORS": ""}, {"TESTBED_SHARED": "1", "TESTBED_ACCEL": "kvm"}])
def test_a_child_given_the_environment_reads_the_same_settings(env):
    c = Config.from_env(env)
    assert Config.from_env(c.environment()) == c


WATCH = """
import importlib, json, os, pkgutil, sys
reads = []
class Watched(dict):
    def get(self, key, default=None):
        reads.append(key)
        return dict.get(self, key, default)
    def __getitem__(self, key):
        reads.append(key)
        return dict.__getitem__(self, key)
    def __contains__(self, key):
        reads.append(key)
        return dict.__contains__(self, key)
os.environ = Watched(os.environ)
import testbed
for mod in pkgutil.walk_packages(testbed.__path__, "testbed."):
    if mod.name != "testbed.__main__":
        importlib.import_module(mod.name)
print(json.dumps(reads))
"""


def test_no_module_reads_the_environment_when_imported():
    out = subprocess.run([sys.executable, "-c", WATCH], capture_output=True, text=True, check=True).stdout
    assert [k for k in json.loads(out) if k.startswith("TESTBED_") or k == "XDG_CACHE_HOME"] == []
