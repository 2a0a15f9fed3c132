"""Image builds at native speed: the engine's own dockerd, from its root disk, on this host's
kernel, writing into the VM's data disk while the VM is down.

Under TCG the guest's dockerd took 217 s to import a 275 MiB base and 82 s to build the node
image; natively the same dockerd takes 3 s and 6 s. Builds need no privileged container, which
this host cannot start; the block stack still runs only in the guest."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

from ..run import TestbedError

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native-dockerd")
READY_TIMEOUT = 60


class Unavailable(TestbedError):
    """This host cannot run the native dockerd: the guest builds the images instead."""


class DiskHeld(TestbedError):
    """A loop device still holds the data disk: booting qemu on it would corrupt it."""


def missing() -> str:
    """Why this host cannot run it ("" if it can): root, unshare, chroot and loop devices."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("unshare", "chroot", "mount", "losetup"):
        if not shutil.which(tool):
            return f"no {tool}"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices"
    return ""


def held(image: str) -> str:
    """The loop devices that hold image (`losetup -j`), "" if none (or no losetup to ask)."""
    if not shutil.which("losetup"):
        return ""
    return subprocess.run(["losetup", "-j", image], capture_output=True, text=True).stdout.strip()


def stop_stale(rundir: str) -> None:
    """A native dockerd an interrupted run left (its pid file), stopped with its process group."""
    pidfile = os.path.join(rundir, "native-dockerd.pid")
    try:
        pid = int(open(pidfile).read())
        if b"dockerd" in open(f"/proc/{pid}/cmdline", "rb").read():
            os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)


@contextlib.contextmanager
def dockerd(root_img: str, data_img: str, rundir: str):
    """A docker client of the native dockerd; stopped, and its mounts gone, on leaving.
    Unavailable: it cannot run here; DiskHeld: data_img is (still) mounted."""
    import docker
    why = missing()
    if why:
        raise Unavailable(f"native dockerd: {why}")
    os.makedirs(rundir, exist_ok=True)
    stop_stale(rundir)
    _released(data_img, root_img)
    with tempfile.TemporaryDirectory(dir=rundir, prefix="native-") as tmp:
        socket_dir, work = os.path.join(tmp, "socket"), os.path.join(tmp, "work")
        os.mkdir(socket_dir)
        sock = os.path.join(socket_dir, "docker.sock")
        log = os.path.join(rundir, "native-dockerd.log")
        # not run(): dockerd stays up while the caller builds. unshare, sh and chroot exec in
        # turn, so proc.pid is dockerd's, and its process group; it dies with this process
        with open(log, "w") as out:
            proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", SCRIPT,
                                     root_img, data_img, socket_dir, work],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        with open(os.path.join(rundir, "native-dockerd.pid"), "w") as f:
            f.write(str(proc.pid))
        try:
            client = _client(proc, sock, log)
            try:
                yield client
            finally:
                client.close()
        finally:
            _stop(proc)
            stop_stale(rundir)
            _released(data_img, root_img)


def _client(proc: subprocess.Popen, sock: str, log: str):
    import docker
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Unavailable(f"native dockerd did not start; {log}:\n" +
                              "\n".join(open(log, errors="replace").read().splitlines()[-5:]))
        if os.path.exists(sock):
            client = docker.DockerClient(base_url=f"unix://{sock}", timeout=600)
            try:
                client.ping()
                return client
            except docker.errors.DockerException:
                client.close()
        time.sleep(0.2)


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: dockerd is killed if the testbed is (it survives exec)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _released(*images: str) -> None:
    """Until no loop device holds the images: the namespace's mounts go a moment after its last
    process, and qemu must not open a data disk that is still mounted."""
    deadline = time.monotonic() + 30
    while any(held(image) for image in images):
        if time.monotonic() > deadline:
            raise DiskHeld(f"a loop device holds {' or '.join(images)} (losetup -j: "
                           f"{'; '.join(filter(None, map(held, images)))}): a native dockerd of an "
                           "interrupted run, or its containers, may still have it mounted")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    """TERM (dockerd shuts down cleanly and unmounts its layers), then KILL the whole group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError):   # what it started in its group, if any outlived it
        os.killpg(proc.pid, signal.SIGKILL)
