"""An engine the docker SDK already reaches (DOCKER_HOST or the local socket)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

from ..run import TestbedError

PROBE_IMAGE = "sltb-probe:busybox"

# Loads (from the engine host's /lib/modules) and then looks: `feature yes|no` lines.
PROBE_SCRIPT = r"""
for m in loop dm_mod dm_snapshot dm_thin_pool md_mod raid1 target_core_mod target_core_iblock iscsi_target_mod iscsi_tcp; do
  modprobe $m 2>/dev/null
done
has() { if [ -e "$2" ]; then echo "$1 yes"; else echo "$1 no"; fi; }
grep -qw device-mapper /proc/misc && echo "dm yes" || echo "dm no"
has loop /sys/module/loop
has dm_snapshot /sys/module/dm_snapshot
has dm_thin_pool /sys/module/dm_thin_pool
grep -q raid1 /proc/mdstat 2>/dev/null && echo "md_raid1 yes" || has md_raid1 /sys/module/raid1
has lio /sys/module/target_core_mod
has lio_iscsi /sys/module/iscsi_target_mod
has iscsi_tcp /sys/module/iscsi_tcp
"""


def _busybox_image(client) -> None:
    """A one-file image made here: the probe needs no registry."""
    import docker.errors
    try:
        client.images.get(PROBE_IMAGE)
        return
    except docker.errors.NotFound:
        pass
    busybox = shutil.which("busybox")
    if not busybox:
        raise TestbedError("busybox-static is needed for the engine probe (apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "modprobe", "grep", "cat"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    client.api.import_image_from_data(buf.getvalue(), repository=PROBE_IMAGE.split(":")[0],
                                      tag=PROBE_IMAGE.split(":")[1])


def probe(steps=None):
    """None if no engine answers; a reason if the privileged probe cannot run; else features."""
    import docker
    import requests
    try:
        client = docker.from_env(timeout=20)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    try:
        _busybox_image(client)
        volumes = {"/lib/modules": {"bind": "/lib/modules", "mode": "ro"}} if os.path.isdir("/lib/modules") else {}
        out = client.containers.run(PROBE_IMAGE, ["sh", "-c", PROBE_SCRIPT], privileged=True,
                                    remove=True, volumes=volumes, labels={"io.snaplayers.testbed": "probe"})
    # the engine answered but refused (no privilege), or the probe failed or could not be made
    except (docker.errors.DockerException, requests.exceptions.RequestException, TestbedError) as err:
        return " ".join(str(err).split())[:200]
    return {line.split()[0]: line.split()[1] == "yes"
            for line in out.decode().splitlines() if len(line.split()) == 2}


class LocalEngine:
    kind = "local"

    def __init__(self, steps=None):
        self.steps = steps

    @property
    def docker_host(self) -> str:
        return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")

    def describe(self) -> str:
        return f"local engine at {self.docker_host}"

    def up(self, prepare=None) -> str:
        """prepare: the VM engine's native image builds; this engine is native already."""
        return self.docker_host

    def down(self) -> None:
        pass

    def status(self) -> dict:
        return {"state": "running" if probe() not in (None,) else "down"}
