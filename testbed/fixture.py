"""A testbed's nodes and its stack, in molecule's steps: create, converge, verify, destroy.

lifecycle.py runs them in order.

Containers and networks carry labels, kernel objects carry the testbed's prefix: destroy finds
and removes them by that alone, so it also cleans up after an interrupted run, and the leak check
looks for the same names afterwards. Each step's docstring says what running it again does.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Dict, List, Optional

from . import LABEL, PREFIX
from .iscsid import ISCSID, PRIVILEGED, ensure_iscsid, image_of_iscsid, iscsiadm
from .progress import Steps
from .run import Result, TestbedError, exec_in, run_container
from .topology import WRONG_KEY, Topology

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
PRELUDE = "prelude.py"


def new_prefix(worker: str = "") -> str:
    """Unique per testbed, short enough for every name it ends up in (dm names, IQNs)."""
    return f"{PREFIX}{worker.replace('gw', '')}{secrets.token_hex(3)}"


def script(name: str) -> str:
    """The text of scripts/name, sent to a node as an argument; a Python one after the prelude
    that gives every in-node script the same sh()."""
    with open(os.path.join(SCRIPTS, name)) as f:
        text = f.read()
    if not name.endswith(".py"):
        return text
    with open(os.path.join(SCRIPTS, PRELUDE)) as f:
        return f.read() + "\n\n" + text


class Testbed:
    def __init__(self, client, image: str, topology: Topology, steps: Optional[Steps] = None):
        self.client = client
        self.image = image
        self.topo = topology
        self.steps = steps or Steps(f"testbed {topology.prefix}")
        self.facts: Dict[str, dict] = {}

    @property
    def prefix(self) -> str:
        return self.topo.prefix

    def labels(self, role: str) -> Dict[str, str]:
        return {LABEL: self.prefix, f"{LABEL}.role": role}

    # -- running things on nodes ----------------------------------------------------------
    def run(self, node: str, argv: List[str], user: str = "root", environment: Optional[dict] = None) -> Result:
        """(exit status, stdout, stderr) of argv on node, whatever the status."""
        return exec_in(self.client.containers.get(self.topo.container(node)), argv, where=node,
                       user=user, environment=environment, check=False)

    def exec(self, node: str, argv: List[str], check: bool = True, user: str = "root",
             environment: Optional[dict] = None) -> str:
        """stdout of argv on node; unless check is False, a failure raises CommandFailed."""
        return exec_in(self.client.containers.get(self.topo.container(node)), argv, where=node,
                       user=user, environment=environment, check=check).stdout

    def until(self, node: str, condition: str, seconds: int, every: float = 1) -> bool:
        """Whether the sh condition held on node within about `seconds`, polled in the node: one
        docker exec in all, since each costs about 1.3 s of the guest's CPU under TCG (measured),
        which a poll from here would take from the work it waits for."""
        loop = (f"end=$(( $(date +%s) + {int(seconds)} )); until {condition}; do "
                f"[ $(date +%s) -ge $end ] && exit 1; sleep {every}; done; exit 0")
        return self.run(node, ["sh", "-c", loop]).status == 0

    def python(self, node: str, name: str, action: str, spec: dict) -> dict:
        out = self.exec(node, ["python3", "-c", script(name), action, json.dumps(spec)])
        return json.loads(out.strip().splitlines()[-1])

    def ip(self, node: str) -> str:
        c = self.client.containers.get(self.topo.container(node))
        return c.attrs["NetworkSettings"]["Networks"][self.topo.network]["IPAddress"]

    # -- lifecycle ------------------------------------------------------------------------
    def create(self) -> None:
        """The engine's iscsid (if it is not up), the network, and the storage hosts' and the
        guest's containers. Expects none of the testbed's own: run again, or after an interrupted
        run, it fails on the first container name that exists (409 Conflict); destroy first."""
        with self.steps.step(f"create {self.prefix}: network and containers"):
            ensure_iscsid(self.client, self.image)
            self.client.networks.create(self.topo.network, driver="bridge",
                                        labels=self.labels("network"))
            for host in self.topo.storage_hosts:
                # own network namespace: its LIO portal and (later) amandad live there
                self.client.containers.run(
                    self.image, ["sleep", "infinity"], name=self.topo.container(host), hostname=host,
                    detach=True, privileged=True, network=self.topo.network,
                    volumes={"/dev": {"bind": "/dev", "mode": "rw"}}, labels=self.labels(host),
                    environment={"DM_DISABLE_UDEV": "1"})
            # host network: the engine's one iscsid is reached through its abstract socket there
            self.client.containers.run(
                self.image, ["sleep", "infinity"], name=self.topo.container(self.topo.guest),
                hostname=self.topo.guest, detach=True, labels=self.labels(self.topo.guest),
                environment={"DM_DISABLE_UDEV": "1"}, **PRIVILEGED)
            for node in (*self.topo.storage_hosts, self.topo.guest):
                self.exec(node, ["sh", "-c", "mount -t configfs none /sys/kernel/config 2>/dev/null; true"])

    def restart(self, node: str) -> None:
        """Restart a node's container: all its processes die and its mounts go with its mount
        namespace, while what it made in the kernel (LVs, md, dm, LIO) stays."""
        with self.steps.step(f"restart {node}"):
            self.client.containers.get(self.topo.container(node)).restart(timeout=0)
            self.exec(node, ["sh", "-c", "mount -t configfs none /sys/kernel/config 2>/dev/null; true"])

    def converge(self) -> None:
        """Builds the stack once, on the containers create made: PVs, VGs, LVs and LIO targets
        on the storage hosts, the guest's iSCSI sessions, md, GPT, LUKS, LVM, filesystems and
        data. Not molecule's converge, which may run again: storage.py makes its PV and VG
        unconditionally, so a second run fails there."""
        targets = []
        # the LUKS variants' keys: the guest formats with them, the plugin opens with them
        keys = {name: os.urandom(32).hex() for name in self.topo.keys()}
        storage_keys = {**keys, WRONG_KEY: os.urandom(32).hex()} if keys else {}
        for host in self.topo.storage_hosts:
            with self.steps.step(f"converge {host}: PV, VG {self.topo.vg(host)}, LVs, LIO target"):
                vols = self.topo.volumes(host)
                facts = self.python(host, "storage.py", "create", {
                    "prefix": self.prefix, "host": host, "vg": self.topo.vg(host),
                    "iqn": self.topo.iqn(host), "workdir": f"/srv/{self.prefix}",
                    "volumes": [{"lv": v.lv, "size_mb": v.size_mb, "thin": v.thin} for v in vols], "keys": storage_keys,
                    "clash_vgs": self.topo.clash_vgs(host),
                    "plain": self.topo.plain if host == self.topo.storage_hosts[0] else {}})
                self.facts[host] = facts
                # LIO listens in the engine's initial network namespace, whichever container
                # configured it (measured): every target is reached at 127.0.0.1, told apart by IQN
                targets.append({"host": host, "ip": "127.0.0.1", "iqn": self.topo.iqn(host),
                                "luns": facts["luns"]})
        with self.steps.step(f"converge {self.topo.guest}: iSCSI login"):
            self.login(targets)
        with self.steps.step(f"converge {self.topo.guest}: md RAID1, GPT, filesystems, data"):
            self.facts[self.topo.guest] = self.python(self.topo.guest, "guest.py", "create", {
                "prefix": self.prefix, "targets": targets, "keys": keys,
                "variants": [{"name": v.name, "legs": [(leg.host, leg.lv) for leg in v.legs],
                              "partition": v.partition, "fs": v.fs, "files": v.files,
                              "luks": v.luks, "vg": v.guest_vg, "thin": any(leg.thin for leg in v.legs),
                              "mount": self.mountpoint(v.name), "manifest": self.manifest_path(v.name)}
                             for v in self.topo.variants]})

    def login(self, targets: List[dict]) -> None:
        """The guest's initiator is the engine's iscsid: its sessions are the kernel's, and the
        guest finds their disks in sysfs as a VM finds its own."""
        for t in targets:
            portal = f"{t['ip']}:3260"
            iscsiadm(self.client, "-m", "discovery", "-t", "sendtargets", "-p", portal)
            # 15: already logged in (a converge run again)
            iscsiadm(self.client, "-m", "node", "-T", t["iqn"], "-p", portal, "--login", ok=(0, 15))

    def mountpoint(self, variant: str) -> str:
        return f"/srv/{self.prefix}/{variant}"

    def manifest_path(self, variant: str) -> str:
        return f"/srv/{self.prefix}/manifests/{variant}.sha256"

    def manifest(self, variant: str) -> str:
        return self.exec(self.topo.guest, ["cat", self.manifest_path(variant)])

    def device(self, variant: str) -> str:
        return self.topo.device(self.topo.variant(variant))

    def verify(self) -> None:
        """Every variant's filesystem is mounted in the guest, of its type. Changes nothing."""
        with self.steps.step("verify: arrays, sessions, mounts"):
            for v in self.topo.variants:
                out = self.exec(self.topo.guest, ["findmnt", "-n", "-o", "FSTYPE", self.mountpoint(v.name)])
                if out.strip() != v.fs:
                    raise TestbedError(f"{self.topo.guest}: {self.mountpoint(v.name)} is {out.strip()!r}, not {v.fs}")

    def destroy(self) -> dict:
        """Containers and network by label, then every kernel object by prefix; returns what
        is still there (the leak check: empty means nothing leaked). Runs on any state, as
        often as wanted: what is not there is not removed."""
        with self.steps.step(f"destroy {self.prefix}") as info:
            for c in self.client.containers.list(all=True, filters={"label": f"{LABEL}={self.prefix}"}):
                c.remove(force=True)
            for n in self.client.networks.list(filters={"label": f"{LABEL}={self.prefix}"}):
                n.remove()
            left = janitor(self.client, self.image, [self.prefix], "clean")
            info["how"] = "clean" if not any(left.values()) else f"LEFT {left}"
        return left


def janitor(client, image: str, prefixes: List[str], action: str) -> dict:
    """Run the janitor in a throw-away privileged container next to the engine's iscsid, from
    its image: its iscsiadm is the one that made the sessions."""
    ensure_iscsid(client, image)
    out = run_container(
        client, image_of_iscsid(client),
        ["sh", "-c", 'mount -t configfs none /sys/kernel/config 2>/dev/null; exec python3 -c "$0" "$@"',
         script("janitor.py"), action, json.dumps({"prefixes": prefixes})],
        where="janitor", pid_mode="host", labels={LABEL: "janitor"}, **PRIVILEGED)
    left = json.loads(out.decode().strip().splitlines()[-1])
    left["containers"] = [c.name for c in client.containers.list(all=True)
                          if c.labels.get(LABEL, "") in prefixes]
    left["networks"] = [n.name for n in client.networks.list() if n.attrs.get("Labels", {}).get(LABEL) in prefixes]
    return left


def plugin_names(client, image: str) -> List[str]:
    """What every kernel object the installed plugin makes is named with, as the plugin itself
    says (`snaplayers status --json`): the leak checks look for these."""
    out = run_container(client, image, ["snaplayers", "status", "--json"], where="the node image's snaplayers")
    names = json.loads(out)["names"]
    return sorted({names[k] for k in ("dm_prefix", "guest_vg_prefix", "md_prefix", "snapshot_suffix",
                                      "discover_suffix")})


def reset(client, image: str) -> dict:
    """Every testbed's leftovers and every snaplayers object: only when no testbed runs."""
    leftovers = [c for c in client.containers.list(all=True)
                 if c.labels.get(LABEL, "").startswith(PREFIX) and c.name != ISCSID]
    for c in leftovers:
        c.remove(force=True)
    for n in client.networks.list():
        if n.attrs.get("Labels", {}).get(LABEL, "").startswith(PREFIX):
            n.remove()
    return janitor(client, image, [PREFIX, *plugin_names(client, image)], "clean")
