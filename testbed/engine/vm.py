"""Running the VM engine: a QEMU guest whose dockerd reaches the host through ssh only.

A stock Debian kernel runs dockerd; its socket reaches the host only through ssh (a per-engine
key), as a unix socket: DOCKER_HOST is the only switch.

It boots the artifacts artifacts.py builds (kernel, initramfs, root disk); the data disk, which
holds dockerd's images, persists between boots, so a warm `up` only boots.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Callable, Optional

from .. import cache
from ..config import Config
from ..debian import KERNELS, need
from ..progress import Steps
from ..run import TestbedError, run, ssh
from . import artifacts, native

DATA_DISK = "64G"       # sparse: it grows as images and backing files fill it
READY_TIMEOUT = 300
TRIAL_TIMEOUT = 15     # KVM boots a kernel to its panic in 1-3 s; a hung trial is TCG


def _alive(pid: int, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return needle.encode() in f.read()
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VmEngine:
    kind = "vm"

    def __init__(self, config: Config, steps: Optional[Steps] = None):
        kernel = config.kernel
        if kernel not in KERNELS:
            raise TestbedError(f"unknown guest kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        self.config = config
        self.kernel = kernel
        self.steps = steps or Steps(f"engine vm-{kernel}")
        self.dir = os.path.join(cache.root(), "run", f"vm-{kernel}")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.state_file = os.path.join(self.dir, "state.json")
        self.console = os.path.join(self.dir, "console.log")
        self.key = os.path.join(self.dir, "id_ed25519")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.sock}"

    def describe(self) -> str:
        st = self._state() or {}
        return f"vm engine: Debian kernel {st.get('kernel_version', self.kernel)} under QEMU/{st.get('accel', '?')}"

    # -- lifecycle ------------------------------------------------------------------------
    def _state(self) -> Optional[dict]:
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def status(self) -> dict:
        st = self._state()
        if not st:
            return {"state": "down"}
        qemu = _alive(st["qemu_pid"], self.dir)
        ssh = _alive(st.get("ssh_pid", -1), self.sock)
        if not qemu:
            return {**st, "state": "dead", "why": f"qemu pid {st['qemu_pid']} is gone (stale state)"}
        if not ssh or not os.path.exists(self.sock):
            return {**st, "state": "degraded", "why": "the ssh socket forward is gone"}
        return {**st, "state": "running"}

    def up(self, prepare: Optional[Callable] = None) -> str:
        """Boots the engine unless it runs. prepare(client), if given, is called before a boot
        with a client of a native dockerd on the data disk (native.py): the images it builds
        there are the guest's when it boots. If this host cannot, the guest builds them later."""
        os.makedirs(self.dir, exist_ok=True)
        with cache.lock(f"engine-vm-{self.kernel}"):       # two `up`s at once give one engine
            st = self.status()
            if st["state"] == "running":
                self.steps.say(f"engine vm-{self.kernel} already running (qemu pid {st['qemu_pid']})")
                return self.docker_host
            if st["state"] == "degraded":
                self._forward(st["port"])
                self._write_state({**self._state(), "ssh_pid": self._ssh_pid})
                return self.docker_host
            self._stop_processes(st)        # dead or stale: clean before booting again
            need("qemu-system-x86_64", "ssh", "ssh-keygen", "mkfs.ext4")
            kernel = artifacts.kernel(self.kernel, self.config.mirror, self.steps)
            root = artifacts.root_disk(kernel, self.config.mirror, self.steps)
            self._data_disk()
            if prepare is not None:
                self._prepare(root, prepare)
            if not os.path.exists(self.key):
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"testbed-vm-{self.kernel}",
                     "-f", self.key])
            if native.held(os.path.join(self.dir, "data.img")):
                raise native.DiskHeld(f"the data disk {self.dir}/data.img is mounted on this host "
                                      "(losetup -j shows it): qemu would corrupt it")
            accel = self._accel(kernel)
            port = _free_port()
            with self.steps.step(f"boot guest ({accel})") as info:
                for attempt in (1, 2):      # an emulated guest can soft-lock at boot: one retry
                    pid = self._launch(kernel, root, accel, port)
                    self._write_state({"qemu_pid": pid, "port": port, "accel": accel,
                                       "kernel": self.kernel, "started": time.time(),
                                       "kernel_version": open(kernel.path("version")).read().strip()})
                    try:
                        uptime = self._wait_ready(pid)
                        break
                    except TestbedError as err:
                        if attempt == 2:
                            raise
                        self.steps.say(f"boot failed, trying once more: {str(err).splitlines()[0]}")
                info["how"] = f"docker answered at {uptime} s guest uptime"
            with self.steps.step("forward docker socket over ssh"):
                self._forward(port)
                self._write_state({**self._state(), "ssh_pid": self._ssh_pid})
        return self.docker_host

    def _data_disk(self) -> None:
        path = os.path.join(self.dir, "data.img")
        if os.path.exists(path):
            return
        with self.steps.step("data disk (sparse, grows as needed)"):
            run(["truncate", "-s", DATA_DISK, path + ".new"])
            run(["mkfs.ext4", "-q", "-F", "-L", "testbed-data", path + ".new"])
            os.replace(path + ".new", path)

    def _prepare(self, root: cache.Artifact, prepare: Callable) -> None:
        import docker.errors
        with self.steps.step("images by a native dockerd, into the data disk") as info:
            try:
                with native.dockerd(root.path("root.img"), os.path.join(self.dir, "data.img"), self.dir) as client:
                    prepare(client)
            except (native.Unavailable, docker.errors.DockerException) as err:
                # DiskHeld, and a failure of the host's own steps (mmdebstrap, the .deb), go on up
                info["how"] = "skipped"
                self.steps.say(f"WARNING: images not built natively ({str(err).splitlines()[0]}): "
                               "the guest builds them (slow under TCG)")

    def _accel(self, kernel: cache.Artifact) -> str:
        """KVM if this host really runs a guest with it (tried, not assumed), else TCG. A
        definite refusal is kept per host kernel, qemu binary and guest kernel: a trial costs
        up to TRIAL_TIMEOUT, and this machine's /dev/kvm hangs every guest."""
        forced = self.config.accel
        if forced in ("kvm", "tcg"):
            return forced
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            self.steps.say("WARNING: no usable /dev/kvm: the guest runs under TCG (slow)")
            return "tcg"
        qemu = shutil.which("qemu-system-x86_64")
        verdict = cache.Artifact("accel", cache.key(os.uname().release, os.uname().version, qemu,
                                                    os.path.getmtime(qemu), kernel.dir))
        with cache.lock("accel"):
            remembered = verdict.done
            if remembered:
                accel, why = "tcg", open(verdict.path("refused")).read()
            else:
                accel, why, definite = self._try_kvm(kernel)
                if accel == "tcg" and definite:
                    with verdict.building():
                        with open(verdict.path("refused"), "w") as f:
                            f.write(why)
        if accel == "tcg":
            self.steps.say(f"WARNING: /dev/kvm refused a guest ({why}{', when tried before' if remembered else ''}): "
                           "the guest runs under TCG (slow)")
        return accel

    def _try_kvm(self, kernel: cache.Artifact):
        """(accel, why, definite): ("kvm", "", True) if a kernel boots to its panic (no root)
        under KVM. A refusal is definite when qemu failed, or hung with nothing on the console
        (not even the kernel's first line): a slow host would have printed something."""
        with tempfile.TemporaryDirectory() as tmp:
            console = os.path.join(tmp, "console")
            try:    # under KVM the kernel reaches its panic in seconds
                proc = run(["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
                            "-display", "none", "-no-reboot", "-kernel", kernel.path("vmlinuz"),
                            "-append", "console=ttyS0 panic=-1", "-serial", f"file:{console}"],
                           check=False, timeout=TRIAL_TIMEOUT)
            except TestbedError as err:     # a KVM that hangs the guest (seen: in the decompressor)
                said = open(console, errors="replace").read().strip() if os.path.exists(console) else ""
                return "tcg", str(err).split(": ")[-1], not said
            if proc.returncode == 0 and "Kernel panic" in open(console, errors="replace").read():
                return "kvm", "", True
        return "tcg", " ".join(proc.stderr.decode(errors="replace").strip().splitlines()[:1]) or "no boot", True

    def _launch(self, kernel, root, accel: str, port: int) -> int:
        pidfile = os.path.join(self.dir, "qemu.pid")
        key = base64.b64encode(open(self.key + ".pub", "rb").read().strip()).decode()
        cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else \
              ["-accel", "tcg,thread=multi", "-cpu", "max"]
        for stale in (pidfile, self.console):
            if os.path.exists(stale):
                os.unlink(stale)
        run(["qemu-system-x86_64", *cpu, "-smp", str(os.cpu_count() or 2), "-m", str(self.config.vm_memory),
             "-name", f"testbed-vm-{self.kernel}", "-nodefaults", "-display", "none", "-no-reboot",
             "-kernel", kernel.path("vmlinuz"), "-initrd", kernel.path("initrd.gz"),
             "-append", f"console=ttyS0 quiet panic=-1 testbed.key={key}",
             # the root disk stays pristine (a cache artifact); writes go to a throw-away overlay
             "-drive", f"file={root.path('root.img')},if=virtio,format=raw,snapshot=on",
             "-drive", f"file={os.path.join(self.dir, 'data.img')},if=virtio,format=raw,discard=unmap",
             "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
             "-serial", f"file:{self.console}", "-daemonize", "-pidfile", pidfile])
        return int(open(pidfile).read().strip())

    def tail(self, n: int = 25) -> str:
        try:
            lines = open(self.console, errors="replace").read().splitlines()
        except OSError:
            return "(no console output)"
        return "\n".join(lines[-n:])

    def _wait_ready(self, pid: int) -> str:
        deadline = time.monotonic() + READY_TIMEOUT
        last = 0.0
        while time.monotonic() < deadline:
            text = open(self.console, errors="replace").read() if os.path.exists(self.console) else ""
            for line in text.splitlines():
                if "testbed-boot: READY" in line:
                    return line.split()[-1]
            if not _alive(pid, self.dir):
                raise TestbedError(f"the guest died while booting; last console lines:\n{self.tail()}")
            if time.monotonic() - last > 10:
                last = time.monotonic()
                self.steps.say("waiting for the guest's dockerd ...")
            time.sleep(0.5)
        self._stop_processes(self._state() or {})
        raise TestbedError(f"the guest did not answer within {READY_TIMEOUT} s; last console lines:\n{self.tail()}")

    def _ssh(self, port: int):
        return ["ssh", "-i", self.key, "-p", str(port), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={os.path.join(self.dir, 'known_hosts')}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR",
                "-o", "ServerAliveInterval=15", "root@127.0.0.1"]

    def _forward(self, port: int) -> None:
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        # not run(): the forward stays up after this returns, as the engine's socket
        proc = subprocess.Popen([*self._ssh(port)[:-1], "-N", "-o", "ExitOnForwardFailure=yes",
                                 "-o", "StreamLocalBindUnlink=yes",
                                 "-L", f"{self.sock}:/var/run/docker.sock", "root@127.0.0.1"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.dir, "ssh.log"), "w"),
                                start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise TestbedError("ssh forward of the guest's docker socket failed: " +
                                   open(os.path.join(self.dir, "ssh.log")).read().strip())
            time.sleep(0.1)
        self._ssh_pid = proc.pid

    def ssh(self, *argv: str, check: bool = True, timeout: float = 120):
        """argv on the VM, as root."""
        st = self._state()
        return ssh(self._ssh(st["port"]), argv, where=f"vm-{self.kernel}", check=check, timeout=timeout)

    def _write_state(self, st: dict) -> None:
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, self.state_file)

    def down(self) -> None:
        with cache.lock(f"engine-vm-{self.kernel}"):
            st = self.status()
            if st["state"] == "down":
                self.steps.say(f"engine vm-{self.kernel} is not running")
                return
            with self.steps.step(f"shut down engine vm-{self.kernel}"):
                if st["state"] in ("running", "degraded"):
                    try:
                        self.ssh("/bin/busybox", "poweroff", check=False, timeout=30)
                    except TestbedError as err:     # a hung guest is still stopped, the hard way
                        self.steps.say(f"clean poweroff failed ({err}); stopping qemu")
                    deadline = time.monotonic() + 90
                    while _alive(st["qemu_pid"], self.dir) and time.monotonic() < deadline:
                        time.sleep(0.5)
                self._stop_processes(st)
                for _ in range(100):        # until the process is gone, not just exiting
                    if not os.path.exists(f"/proc/{st['qemu_pid']}"):
                        break
                    time.sleep(0.1)

    def _stop_processes(self, st: dict) -> None:
        """No orphan qemu or ssh survives: TERM, then KILL."""
        for key, needle in (("ssh_pid", self.sock), ("qemu_pid", self.dir)):
            pid = st.get(key)
            if not pid:
                continue
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not _alive(pid, needle):
                    break
                os.kill(pid, sig)
                for _ in range(50):
                    if not _alive(pid, needle):
                        break
                    time.sleep(0.1)
        for path in (self.state_file, self.sock):
            if os.path.exists(path):
                os.unlink(path)
