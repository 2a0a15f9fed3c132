"""Building the VM engine's boot artifacts on this host, cached by their inputs.

A Debian kernel with a busybox initramfs that loads what the root disk needs, and a root disk
(an mmdebstrap of Debian with dockerd and the kernel's modules)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

from .. import cache
from ..debian import KERNELS, Apt, mmdebstrap, need
from ..progress import Steps
from ..run import run

GUEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest")
ENGINE_SUITE = "bookworm"
ENGINE_PACKAGES = ["docker.io", "kmod", "iproute2", "openssh-server", "e2fsprogs", "procps",
                   "util-linux", "iptables", "ca-certificates"]
ROOT_MODULES = ["virtio_pci", "virtio_blk", "ext4"]      # what the initramfs loads
RECIPE_VERSION = 1      # bump when the way the root disk is assembled changes


def _recipe() -> str:
    files = sorted(glob.glob(os.path.join(GUEST, "*")))
    return cache.key(ENGINE_SUITE, ENGINE_PACKAGES, ROOT_MODULES, cache.file_hash(*files), RECIPE_VERSION)


def kernel(flavour: str, archive: str, steps: Steps) -> cache.Artifact:
    """vmlinuz, initrd.gz, modules/ and version of the kernel flavour (a key of KERNELS)."""
    suite, meta = KERNELS[flavour]
    art = cache.Artifact("kernel", cache.key(flavour, suite, meta, ROOT_MODULES, 2))
    with steps.step(f"kernel {flavour} ({suite})", cached=art.done) as info:
        if art.done:
            return art
        need("apt-get", "dpkg-deb", "depmod", "busybox", "cpio")
        with art.building():
            apt = Apt(suite, archive)
            apt.update()
            package = apt.depends(meta)
            steps.say(f"downloading {package} {apt.version(package)}")
            deb = apt.download(package, art.dir)
            tree = art.path("tree")
            run(["dpkg-deb", "-x", deb, tree])
            os.unlink(deb)
            mods = glob.glob(f"{tree}/lib/modules/*") + glob.glob(f"{tree}/usr/lib/modules/*")
            version = os.path.basename(mods[0])
            shutil.move(mods[0], art.path("modules"))
            shutil.move(glob.glob(f"{tree}/boot/vmlinuz-*")[0], art.path("vmlinuz"))
            shutil.rmtree(tree)
            _initrd(art, version)
            with open(art.path("version"), "w") as f:
                f.write(version)
        info["how"] = f"built ({package})"
    return art


def _initrd(art: cache.Artifact, version: str) -> None:
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
        # find | cpio -o -H newc | gzip -1, one command at a time
        listing = run(["find", "."], cwd=root).stdout
        archive = run(["cpio", "-o", "-H", "newc", "--quiet"], input=listing, cwd=root).stdout
        with open(art.path("initrd.gz"), "wb") as f:
            f.write(run(["gzip", "-1"], input=archive).stdout)


def root_disk(kernel: cache.Artifact, archive: str, steps: Steps) -> cache.Artifact:
    """root.img: ext4, Debian with dockerd, the kernel's modules and the files of testbed/engine/guest."""
    art = cache.Artifact("engine-root", cache.key(_recipe(), kernel.dir))
    with steps.step(f"engine root disk ({ENGINE_SUITE}, dockerd)", cached=art.done):
        if art.done:
            return art
        need("mmdebstrap", "mkfs.ext4", "depmod", "busybox")
        with art.building(), tempfile.TemporaryDirectory(dir=art.dir) as tmp:
            tar = os.path.join(tmp, "rootfs.tar")
            mmdebstrap(ENGINE_SUITE, ENGINE_PACKAGES, tar, archive)
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
