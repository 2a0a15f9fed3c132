"""The engine's one iscsid, in a container of its own, and the initiator commands run next to it.

One iscsid serves a kernel (its netlink socket is not namespaced), and every initiator command
runs next to it, so one open-iscsi version talks to itself even when nodes of several Debian
suites share the engine (bullseye's iscsiadm hung on trixie's iscsid: measured)."""

from __future__ import annotations

import time

from . import LABEL, PREFIX
from .run import TestbedError, exec_in

ISCSID = f"{PREFIX}-iscsid"
# LIO keeps one network portal per address, kernel-wide, in the namespace of whoever made it
# first (measured): this target, made from the engine's own namespace and never removed, owns
# 0.0.0.0:3260 there, so every storage host's target is reached at 127.0.0.1:3260.
ANCHOR = "iqn.2026-11.io.snaplayers:engine-portal"
PRIVILEGED = dict(privileged=True, network_mode="host", volumes={"/dev": {"bind": "/dev", "mode": "rw"}})


def ensure_iscsid(client, image: str) -> None:
    """Started once per engine and shared: every --network host container reaches it."""
    import docker.errors
    try:
        c = client.containers.get(ISCSID)
        running = c.status == "running"
        if not running:
            c.remove(force=True)
    except docker.errors.NotFound:
        running = False
    if running:
        return _anchor(client)      # a rebooted engine restarts iscsid, but the anchor is gone
    client.containers.run(
        image, ["sh", "-c", "mount -t configfs none /sys/kernel/config 2>/dev/null; "
                            "echo InitiatorName=iqn.2026-11.io.snaplayers:engine > /etc/iscsi/initiatorname.iscsi; "
                            "exec iscsid -f"],
        name=ISCSID, detach=True, labels={LABEL: "iscsid"}, restart_policy={"Name": "always"}, **PRIVILEGED)
    for _ in range(100):
        if "iscsid" in client.containers.get(ISCSID).top()["Processes"][-1][-1]:
            break
        time.sleep(0.1)
    else:
        raise TestbedError(f"{ISCSID} did not start: {client.containers.get(ISCSID).logs()[-500:]!r}")
    _anchor(client)


def iscsiadm(client, *args: str, ok=(0,), timeout: int = 120) -> str:
    """iscsiadm in the engine's iscsid container: the node records live there too."""
    return exec_in(client.containers.get(ISCSID), ["timeout", str(timeout), "iscsiadm", *args],
                   where=ISCSID, ok=ok).stdout


def image_of_iscsid(client) -> str:
    """The image the engine's iscsid runs from: the kernel-wide helpers use the same tools."""
    return client.containers.get(ISCSID).image.id


def _anchor(client) -> None:
    exec_in(client.containers.get(ISCSID), ["python3", "-c", ANCHOR_SCRIPT, ANCHOR],
            where=f"{ISCSID} (the portal anchor)")


# through rtslib-fb, targetcli's library: a target, TPG 1 enabled, the portal on every address
ANCHOR_SCRIPT = """
import os, sys
if not os.path.isdir("/sys/kernel/config/target/iscsi/" + sys.argv[1]):
    from rtslib_fb import TPG, FabricModule, NetworkPortal, Target
    tpg = TPG(Target(FabricModule("iscsi"), sys.argv[1], mode="create"), 1, mode="create")
    NetworkPortal(tpg, "0.0.0.0", 3260, mode="create")
    tpg.enable = True
"""
