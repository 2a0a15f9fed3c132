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


class _Art:
    def __init__(self, path):
        self.dir = str(path)

    def path(self, name):
        return f"{self.dir}/{name}"


def test_a_host_that_cannot_build_natively_leaves_the_images_to_the_guest(tmp_path, monkeypatch):
    from testbed.engine import native
    eng, out = _vm(tmp_path, monkeypatch)
    monkeypatch.setattr(native, "missing", lambda: "no loop devices")
    called = []
    eng._prepare(_Art(tmp_path), called.append)
    assert called == [] and "WARNING: images not built natively (native dockerd: no loop devices)" in out.getvalue()
    assert eng.steps.rows[-1][2] == "skipped"


@pytest.mark.parametrize("error", ["DiskHeld", "TestbedError"])
def test_a_held_data_disk_or_a_failed_build_step_of_this_host_is_not_skipped(tmp_path, monkeypatch, error):
    import contextlib

    from testbed.engine import native
    eng, out = _vm(tmp_path, monkeypatch)
    raised = getattr(native, error)("boom")

    @contextlib.contextmanager
    def dockerd(*args):
        yield object()

    def prepare(client):
        raise raised
    monkeypatch.setattr(native, "dockerd", dockerd)
    with pytest.raises(type(raised)):
        eng._prepare(_Art(tmp_path), prepare)
    assert "WARNING" not in out.getvalue()


def test_qemu_never_boots_on_a_data_disk_a_loop_device_holds(tmp_path, monkeypatch):
    from testbed.engine import artifacts, native, vm
    eng, out = _vm(tmp_path, monkeypatch)
    monkeypatch.setattr(vm, "need", lambda *tools: None)
    monkeypatch.setattr(artifacts, "kernel", lambda *a: _Art(tmp_path))
    monkeypatch.setattr(artifacts, "root_disk", lambda *a: _Art(tmp_path))
    monkeypatch.setattr(eng, "_data_disk", lambda: None)
    monkeypatch.setattr(native, "held", lambda image: f"/dev/loop0: []: ({image})")
    monkeypatch.setattr(eng, "_launch", lambda *a: pytest.fail("qemu launched on a held data disk"))
    with pytest.raises(native.DiskHeld, match="data.img is mounted on this host"):
        eng.up()


def _kvm(tmp_path, monkeypatch, verdicts):
    import os
    import shutil
    eng, out = _vm(tmp_path, monkeypatch)
    qemu = tmp_path / "qemu"
    qemu.write_text("")
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    monkeypatch.setattr(shutil, "which", lambda tool: str(qemu))
    tried = []
    monkeypatch.setattr(eng, "_try_kvm", lambda kernel: tried.append(1) or verdicts[len(tried) - 1])
    return eng, out, tried, qemu


def test_a_definite_kvm_refusal_is_tried_once_per_host_kernel_qemu_and_guest_kernel(tmp_path, monkeypatch):
    import os
    eng, out, tried, qemu = _kvm(tmp_path, monkeypatch, [("tcg", "no answer after 15 s", True)] * 3)
    kernel = _Art(tmp_path / "k1")
    assert eng._accel(kernel) == "tcg" and eng._accel(kernel) == "tcg" and tried == [1]
    said = out.getvalue().splitlines()
    assert "(no answer after 15 s)" in said[0] and "(no answer after 15 s, when tried before)" in said[1]
    assert eng._accel(_Art(tmp_path / "k2")) == "tcg" and tried == [1, 1]      # another guest kernel
    os.utime(qemu, (1, 1))                                                       # another qemu
    assert eng._accel(kernel) == "tcg" and tried == [1, 1, 1]


def test_a_kvm_trial_that_was_slow_rather_than_refused_is_tried_again(tmp_path, monkeypatch):
    eng, out, tried, qemu = _kvm(tmp_path, monkeypatch, [("tcg", "no answer after 15 s", False), ("kvm", "", True)])
    kernel = _Art(tmp_path / "k1")
    assert eng._accel(kernel) == "tcg" and eng._accel(kernel) == "kvm" and tried == [1, 1]
