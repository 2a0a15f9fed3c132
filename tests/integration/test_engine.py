"""The engine's kernel really holds each kind of object the testbed needs."""

import secrets

import pytest

from testbed.fixture import script
from testbed.fixture.iscsid import ensure_iscsid

pytestmark = pytest.mark.integration


def test_probe_creates_and_removes_every_kernel_object(engine, node_image):
    ensure_iscsid(engine, node_image)
    prefix = f"sltbprobe{secrets.token_hex(3)}"
    out = engine.containers.run(
        node_image, ["bash", "-c", 'mount -t configfs none /sys/kernel/config 2>/dev/null; exec bash -c "$0" probe-stack "$@"',
                     script("probe-stack.sh"), prefix],
        remove=True, privileged=True, network_mode="host", environment={"DM_DISABLE_UDEV": "1"},
        volumes={"/dev": {"bind": "/dev", "mode": "rw"}}, labels={"io.snaplayers.testbed": prefix})
    lines = out.decode().splitlines()
    for what in ("loop devices", "dm linear", "dm snapshot", "md raid1", "LIO fileio backstore",
                 "iSCSI login: /dev/sd"):
        assert any(what in line for line in lines), f"{what!r} missing from:\n{out.decode()}"
    assert lines[-1] == "probe: nothing left"


def test_engine_reports_running_with_its_kernel(engine):
    eng = engine.testbed_engine
    info = engine.info()
    if eng.kind == "vm":        # the kernel asked for, booted: not the host's
        st = eng.status()
        assert st["state"] == "running"
        assert info["KernelVersion"] == st["kernel_version"]
        assert info["KernelVersion"].startswith(eng.kernel + "."), (info["KernelVersion"], eng.kernel)
