"""Debian packages fetched from the archive this host already uses, without installing them."""

from __future__ import annotations

import glob
import os
import re
import shutil
from typing import Dict, Tuple

from . import cache
from .run import TestbedError, run

KERNELS = {  # kernel flavour -> (suite whose archive ships it, metapackage)
    "6.1": ("bookworm", "linux-image-amd64"),
    "6.12": ("trixie", "linux-image-amd64"),
}


def mirror(chosen: str) -> str:
    """chosen (TESTBED_MIRROR), else the host's own Debian mirror: no host is named in this code."""
    if chosen:
        return chosen
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            text = open(path).read()
        except OSError:
            continue
        for uri in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    raise TestbedError("no Debian mirror in /etc/apt/sources.list*: set TESTBED_MIRROR")


def need(*tools: str) -> None:
    packages = {"qemu-system-x86_64": "qemu-system-x86", "mmdebstrap": "mmdebstrap",
                "busybox": "busybox-static", "cpio": "cpio", "depmod": "kmod",
                "ssh": "openssh-client", "ssh-keygen": "openssh-client", "mkfs.ext4": "e2fsprogs",
                "apt-get": "apt", "dpkg-deb": "dpkg"}
    missing = sorted({packages.get(t, t) for t in tools if not shutil.which(t)})
    if missing:
        raise TestbedError(f"missing host tools: install the Debian packages {' '.join(missing)} "
                           f"(apt-get install {' '.join(missing)}; `make deps` does it as root)")


class Apt:
    """A private apt state for one suite: the host's apt configuration stays untouched."""

    def __init__(self, suite: str, archive: str, kind: str = "deb"):
        self.suite = suite
        self.archive = archive  # TESTBED_MIRROR; "": the host's own mirror
        self.kind = kind        # "deb-src": source packages
        self.dir = os.path.join(cache.root(), "apt", suite if kind == "deb" else f"{suite}-src")

    def _opts(self):
        return ["-o", f"Dir::Etc::SourceList={self.dir}/sources.list", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State={self.dir}/state", "-o", f"Dir::Cache={self.dir}/cache",
                "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root", "-q"]

    def update(self) -> None:
        need("apt-get")
        os.makedirs(f"{self.dir}/state/lists/partial", exist_ok=True)
        os.makedirs(f"{self.dir}/cache/archives/partial", exist_ok=True)
        with open(f"{self.dir}/sources.list", "w") as f:
            f.write(f"{self.kind} [trusted=yes] {mirror(self.archive)} {self.suite} main\n")
        try:
            run(["apt-get", *self._opts(), "update"], timeout=600)
        except TestbedError as err:
            raise TestbedError(f"the Debian archive {mirror(self.archive)} is unreachable: {err}") from None

    def depends(self, package: str) -> str:
        out = run(["apt-cache", *self._opts(), "depends", package]).stdout.decode()
        found = re.findall(r"Depends: (linux-image-\S+)", out)
        if not found:
            raise TestbedError(f"{package} in {self.suite} depends on no kernel image")
        return found[0]

    def version(self, package: str) -> str:
        out = run(["apt-cache", *self._opts(), "show", "--no-all-versions", package]).stdout.decode()
        return re.search(r"^Version: (\S+)", out, re.M).group(1)

    def source_files(self, package: str) -> Tuple[str, Dict[str, str]]:
        """(pool directory, file name -> sha256) of a source package, from the Sources index."""
        out = run(["apt-cache", *self._opts(), "showsrc", "--only-source", package]).stdout.decode()
        record = out.split("\n\n")[0]
        directory = re.search(r"^Directory: (\S+)", record, re.M).group(1)
        block = re.search(r"^Checksums-Sha256:\n((?: .*\n?)+)", record, re.M).group(1)
        files = {name: digest for digest, _, name in (ln.split() for ln in block.splitlines() if ln.strip())}
        return directory, files

    def download(self, package: str, dest: str) -> str:
        run(["apt-get", *self._opts(), "download", package], cwd=dest, timeout=900)
        debs = glob.glob(os.path.join(dest, f"{package}_*.deb"))
        if not debs:
            raise TestbedError(f"apt-get download {package} left no .deb")
        return debs[0]


def mmdebstrap(suite: str, packages, out_tar: str, archive: str) -> None:
    need("mmdebstrap")
    excludes = ["--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright"]
    try:
        run(["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(packages)}", *excludes,
             suite, out_tar, mirror(archive)], timeout=1800)
    except TestbedError as err:
        raise TestbedError(f"mmdebstrap {suite} failed (is the Debian archive reachable?): {err}") from None
