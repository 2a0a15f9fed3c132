"""The VM engine: a QEMU guest with a stock Debian kernel runs dockerd; its socket reaches the
host only through ssh (a per-engine key), as a unix socket: DOCKER_HOST is the only switch.

Artifacts (kernel, initramfs, root disk) are cached by their inputs; the data disk, which
holds dockerd's images, persists between boots, so a warm `up` only boots.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional

from .. import cache
from ..debian import KERNELS, Apt, mmdebstrap, need
from ..progress import Steps
from ..run import TestbedError, run

GUEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest")
ENGINE_SUITE = "bookworm"
ENGINE_PACKAGES = ["docker.io", "kmod", "iproute2", "openssh-server", "e2fsprogs", "procps",
                   "util-linux", "iptables", "ca-certificates"]
ROOT_MODULES = ["virtio_pci", "virtio_blk", "ext4"]      # what the initramfs loads
MEMORY_MB = int(os.environ.get("TESTBED_VM_MEMORY", "4096"))
DATA_DISK = "64G"       # sparse: it grows as images and backing files fill it
READY_TIMEOUT = 300
RECIPE_VERSION = 1      # bump when the way the root disk is assembled changes


def _recipe() -> str:
    files = sorted(glob.glob(os.path.join(GUEST, "*")))
    return cache.key(ENGINE_SUITE, ENGINE_PACKAGES, ROOT_MODULES, cache.file_hash(*files), RECIPE_VERSION)


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

    def __init__(self, kernel: str = "6.1", steps: Optional[Steps] = None):
        if kernel not in KERNELS:
            raise TestbedError(f"unknown guest kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
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

    # -- artifacts ------------------------------------------------------------------------
    def _kernel(self) -> cache.Artifact:
        suite, meta = KERNELS[self.kernel]
        art = cache.Artifact("kernel", cache.key(self.kernel, suite, meta, ROOT_MODULES, 2))
        with self.steps.step(f"kernel {self.kernel} ({suite})", cached=art.done) as info:
            if art.done:
                return art
            need("apt-get", "dpkg-deb", "depmod", "busybox", "cpio")
            with art.building():
                apt = Apt(suite)
                apt.update()
                package = apt.depends(meta)
                self.steps.say(f"downloading {package} {apt.version(package)}")
                deb = apt.download(package, art.dir)
                tree = art.path("tree")
                run(["dpkg-deb", "-x", deb, tree])
                os.unlink(deb)
                mods = glob.glob(f"{tree}/lib/modules/*") + glob.glob(f"{tree}/usr/lib/modules/*")
                version = os.path.basename(mods[0])
                shutil.move(mods[0], art.path("modules"))
                shutil.move(glob.glob(f"{tree}/boot/vmlinuz-*")[0], art.path("vmlinuz"))
                shutil.rmtree(tree)
                self._initrd(art, version)
                with open(art.path("version"), "w") as f:
                    f.write(version)
            info["how"] = f"built ({package})"
        return art

    def _initrd(self, art: cache.Artifact, version: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            lib = os.path.join(tmp, "lib", "modules", version)
            os.makedirs(os.path.join(tmp, "lib", "modules"))
            shutil.copytree(art.path("modules"), lib, symlinks=True)
            run(["depmod", "-b", tmp, version])
            order = []
            for module in ROOT_MODULES:
                out = run(["modprobe", "-d", tmp, "-S", version, "--show-depends", module]).stdout.decode()
                order += [line.split()[1] for line in out.splitlines() if line.startswith("insmod ")]
            root = os.path.join(tmp, "initrd")
            for d in ("bin", "lib/modules", "newroot", "proc", "sys", "dev"):
                os.makedirs(os.path.join(root, d))
            shutil.copy(shutil.which("busybox"), os.path.join(root, "bin", "busybox"))
            names = []
            for path in dict.fromkeys(order):
                name = os.path.basename(path)
                if name.endswith(".xz"):        # trixie's modules are compressed; busybox insmod is not
                    run(["xz", "-dk", path])
                    path, name = path[:-3], name[:-3]
                shutil.copy(path, os.path.join(root, "lib", "modules", name))
                names.append(name)
            with open(os.path.join(root, "modules.order"), "w") as f:
                f.write("\n".join(names) + "\n")
            shutil.copy(os.path.join(GUEST, "initrd-init"), os.path.join(root, "init"))
            os.chmod(os.path.join(root, "init"), 0o755)
            cpio = subprocess.run("find . | cpio -o -H newc --quiet | gzip -1", shell=True,
                                  cwd=root, capture_output=True, check=True).stdout
            with open(art.path("initrd.gz"), "wb") as f:
                f.write(cpio)

    def _rootfs(self, kernel: cache.Artifact) -> cache.Artifact:
        art = cache.Artifact("engine-root", cache.key(_recipe(), kernel.dir))
        with self.steps.step(f"engine root disk ({ENGINE_SUITE}, dockerd)", cached=art.done):
            if art.done:
                return art
            need("mmdebstrap", "mkfs.ext4", "depmod", "busybox")
            with art.building(), tempfile.TemporaryDirectory(dir=art.dir) as tmp:
                tar = os.path.join(tmp, "rootfs.tar")
                mmdebstrap(ENGINE_SUITE, ENGINE_PACKAGES, tar)
                tree = os.path.join(tmp, "tree")
                os.makedirs(tree)
                run(["tar", "-C", tree, "-xf", tar])
                os.unlink(tar)
                version = open(kernel.path("version")).read().strip()
                shutil.copytree(kernel.path("modules"), f"{tree}/lib/modules/{version}", symlinks=True)
                run(["depmod", "-b", tree, version])
                shutil.copy(shutil.which("busybox"), f"{tree}/bin/busybox")
                os.makedirs(f"{tree}/etc/testbed", exist_ok=True)
                shutil.copy(os.path.join(GUEST, "modules"), f"{tree}/etc/testbed/modules")
                shutil.copy(os.path.join(GUEST, "inittab"), f"{tree}/etc/inittab")
                for name in ("testbed-boot", "testbed-halt"):
                    shutil.copy(os.path.join(GUEST, name), f"{tree}/sbin/{name}")
                    os.chmod(f"{tree}/sbin/{name}", 0o755)
                run(["mkfs.ext4", "-q", "-F", "-L", "testbed-root", "-d", tree, art.path("root.img"), "3G"])
        return art

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

    def up(self) -> str:
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
            kernel = self._kernel()
            root = self._rootfs(kernel)
            self._data_disk()
            if not os.path.exists(self.key):
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"testbed-vm-{self.kernel}",
                     "-f", self.key])
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

    def _accel(self, kernel: cache.Artifact) -> str:
        """KVM if this host really runs a guest with it (tried, not assumed), else TCG."""
        forced = os.environ.get("TESTBED_ACCEL")
        if forced in ("kvm", "tcg"):
            return forced
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            self.steps.say("WARNING: no usable /dev/kvm: the guest runs under TCG (slow)")
            return "tcg"
        with tempfile.TemporaryDirectory() as tmp:
            console = os.path.join(tmp, "console")
            proc = subprocess.run(
                ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
                 "-display", "none", "-no-reboot", "-kernel", kernel.path("vmlinuz"),
                 "-append", "console=ttyS0 panic=-1 quiet", "-serial", f"file:{console}"],
                capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            booted = proc.returncode == 0 and "Kernel panic" in open(console, errors="replace").read()
        if booted:
            return "kvm"
        why = proc.stderr.decode(errors="replace").strip().splitlines()[:1]
        self.steps.say(f"WARNING: /dev/kvm refused a guest ({' '.join(why) or 'no boot'}): "
                       "the guest runs under TCG (slow)")
        return "tcg"

    def _launch(self, kernel, root, accel: str, port: int) -> int:
        pidfile = os.path.join(self.dir, "qemu.pid")
        key = base64.b64encode(open(self.key + ".pub", "rb").read().strip()).decode()
        cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else \
              ["-accel", "tcg,thread=multi", "-cpu", "max"]
        for stale in (pidfile, self.console):
            if os.path.exists(stale):
                os.unlink(stale)
        run(["qemu-system-x86_64", *cpu, "-smp", str(os.cpu_count() or 2), "-m", str(MEMORY_MB),
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
        st = self._state()
        return run([*self._ssh(st["port"]), *argv], check=check, timeout=timeout)

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
