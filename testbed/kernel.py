"""Engine-wide singletons: one iscsid serves a kernel (its netlink socket is not namespaced),
and every initiator command runs next to it, so one open-iscsi version talks to itself even
when nodes of several Debian suites share the engine (bullseye's iscsiadm hung on trixie's
iscsid: measured)."""

from __future__ import annotations

import time

from . import LABEL, PREFIX
from .run import TestbedError

ISCSID = f"{PREFIX}-iscsid"
# LIO keeps one network portal per address, kernel-wide, in the namespace of whoever made it
# first (measured): this target, made from the engine's own namespace and never removed, owns
# 0.0.0.0:3260 there, so every storage host's target is reached at 127.0.0.1:3260.
ANCHOR = "iqn.2026-11.io.snaplayers:engine-portal"
PRIVILEGED = dict(privileged=True, network_mode="host", volumes={"/dev": {"bind": "/dev", "mode": "rw"}})


def ensure_iscsid(client, image: str) -> None:
    """Started once per engine and shared: every --network host container reaches it."""
    try:
        c = client.containers.get(ISCSID)
        running = c.status == "running"
        if not running:
            c.remove(force=True)
    except Exception:
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
    code, out = client.containers.get(ISCSID).exec_run(["timeout", str(timeout), "iscsiadm", *args])
    if code not in ok:
        raise TestbedError(f"{ISCSID}: `iscsiadm {' '.join(args)}` exited {code}: {out.decode()[-800:]}")
    return out.decode()


def image_of_iscsid(client) -> str:
    """The image the engine's iscsid runs from: the kernel-wide helpers use the same tools."""
    return client.containers.get(ISCSID).image.id


def _anchor(client) -> None:
    code, out = client.containers.get(ISCSID).exec_run(["sh", "-c", f"""
        test -d /sys/kernel/config/target/iscsi/{ANCHOR} && exit 0
        # a restarted container keeps a stale pid file in /run/dbus
        mkdir -p /run/dbus; pgrep -x dbus-daemon >/dev/null || {{ rm -f /run/dbus/pid; dbus-daemon --system --fork; }}
        targetcli set global auto_save_on_exit=false >/dev/null && targetcli /iscsi create {ANCHOR} >/dev/null
        test -d /sys/kernel/config/target/iscsi/{ANCHOR}"""])
    if code != 0:
        raise TestbedError(f"{ISCSID}: cannot create the portal anchor: {out.decode()[-800:]}")
