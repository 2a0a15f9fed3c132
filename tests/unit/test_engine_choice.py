"""Engine choice against probe results (the probing itself runs in the integration tier)."""

import pytest

from testbed.config import Config
from testbed.engine import FEATURES, choose
from testbed.run import TestbedError

ALL = {f: True for f in FEATURES}


def test_a_capable_local_engine_is_used():
    kind, why = choose("", lambda: ALL)
    assert kind == "local" and "has" in why


def test_no_engine_means_the_vm():
    kind, why = choose("", lambda: None)
    assert kind == "vm" and "no Docker engine" in why


def test_an_engine_without_privilege_means_the_vm():
    kind, why = choose("", lambda: "unable to apply caps", "tcp://x:2375")
    assert kind == "vm" and "privileged" in why and "tcp://x:2375" in why


@pytest.mark.parametrize("missing", FEATURES)
def test_a_kernel_missing_any_feature_means_the_vm(missing):
    kind, why = choose("", lambda: {**ALL, missing: False})
    assert kind == "vm" and missing in why


def test_forcing_skips_the_probe():
    def boom():
        raise AssertionError("probed although forced")
    assert choose("vm", boom)[0] == "vm"
    assert choose("local", boom)[0] == "local"


def test_a_bad_forced_value_is_an_error():
    with pytest.raises(TestbedError, match="local or vm"):
        choose("kvm", lambda: ALL)


def test_the_forced_engine_comes_from_testbed_engine():
    forced = Config.from_env({"TESTBED_ENGINE": "vm"}).engine
    assert choose(forced, lambda: ALL) == ("vm", "TESTBED_ENGINE=vm")


def _vm(tmp_path, monkeypatch):
    import io

    from testbed.engine.vm import VmEngine
    from testbed.progress import Steps
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    out = io.StringIO()
    return VmEngine(Config.from_env({}), Steps("t", out=out)), out


def test_a_host_that_cannot_build_natively_leaves_the_images_to_the_guest(tmp_path, monkeypatch):
    from testbed.engine import native
    eng, out = _vm(tmp_path, monkeypatch)
    monkeypatch.setattr(native, "missing", lambda: "no loop devices")
    called = []
    eng._prepare(type("Root", (), {"path": lambda self, name: str(tmp_path / name)})(), called.append)
    assert called == [] and "WARNING: images not built natively (native dockerd: no loop devices)" in out.getvalue()
    assert eng.steps.rows[-1][2] == "skipped"


def test_a_kvm_verdict_is_tried_once_per_host_kernel_and_qemu(tmp_path, monkeypatch):
    import os
    import shutil
    eng, out = _vm(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/true")
    tried = []
    monkeypatch.setattr(eng, "_try_kvm", lambda kernel: tried.append(1) or ("tcg", "no answer after 15 s"))
    assert eng._accel(None) == "tcg" and eng._accel(None) == "tcg" and tried == [1]
    said = out.getvalue().splitlines()
    assert "(no answer after 15 s)" in said[0] and "(no answer after 15 s, when tried before)" in said[1]
