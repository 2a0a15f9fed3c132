"""Amanda built natively from Debian's source package as Zmanda's RPMs lay it out, as a tar.

User `amandabackup` in group `disk`, programs and the application directory under
/usr/libexec/amanda: the matrix's layout cell. The result is a tar of `make install`, cached."""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
import urllib.request
from typing import Sequence

from .. import cache
from ..config import Config
from ..debian import Apt, mirror, need
from ..progress import Steps
from ..run import TestbedError, run

# named here only: the build chroot and the configure flags use it, images/zmanda/Dockerfile gets it
# as build arguments; disk: gid 6 on Debian and RHEL alike
USER, GROUP, UID = "amandabackup", "disk", 390
CONFIGURE = ["--prefix=/usr", "--bindir=/usr/sbin", "--sbindir=/usr/sbin", "--libexecdir=/usr/libexec",
             "--sysconfdir=/etc", "--localstatedir=/var", "--sharedstatedir=/var/lib",
             f"--with-user={USER}", f"--with-group={GROUP}", "--with-amandahosts",
             "--with-bsd-security", "--with-bsdtcp-security", "--with-bsdudp-security", "--with-ssh-security",
             "--with-debugging=/var/log/amanda", "--with-gnutar-listdir=/var/lib/amanda/gnutar-lists",
             "--with-amandates=/var/lib/amanda/amandates", "--with-index-server=localhost",
             "--with-tcpportrange=50000,50100", "--with-udpportrange=840,860", "--without-ipv6"]


def fetch_source(suite: str, package: str, dest: str, archive: str, fallbacks: Sequence[str]) -> str:
    """Download a Debian source package's files into dest; returns the .dsc path. fallbacks:
    where a file the archive lacks may be found (the orig tarball is shared with Ubuntu's
    package); every file is checked against the sha256 of Debian's Sources index."""
    apt = Apt(suite, archive, "deb-src")
    apt.update()
    directory, files = apt.source_files(package)
    for name, digest in files.items():
        urls = [f"{mirror(archive)}/{directory}/{name}"] + [f"{m}/{directory.split('/', 2)[2]}/{name}"
                                                           for m in fallbacks]
        for url in urls:
            try:
                data = urllib.request.urlopen(url, timeout=120).read()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == digest:
                with open(os.path.join(dest, name), "wb") as f:
                    f.write(data)
                break
        else:
            raise TestbedError(f"source file {name} of {package} ({suite}) with sha256 {digest[:16]}... "
                               f"is at none of {', '.join(urls)} (TESTBED_SOURCE_MIRRORS adds places)")
    return os.path.join(dest, next(n for n in files if n.endswith(".dsc")))


def amanda_tar(config: Config, steps: Steps) -> str:
    """The tar of Amanda's `make install` with the Zmanda layout, for config's suite; built once
    per input."""
    suite = config.suite
    art = cache.Artifact("amanda-zmanda", cache.key(suite, CONFIGURE, USER, UID, 1))
    with steps.step(f"Amanda {suite} source, Zmanda layout (native build)", cached=art.done):
        if not art.done:
            with art.building(), tempfile.TemporaryDirectory() as tmp:
                dsc = fetch_source(suite, "amanda", tmp, config.mirror, config.source_mirrors)
                build(suite, dsc, art.dir, config.mirror)
    return art.path("amanda.tar")


def build(suite: str, dsc: str, out: str, archive: str) -> None:
    need("mmdebstrap")
    src = os.path.dirname(dsc)
    inside = " && ".join([
        f"dpkg-source -x /build/in/{os.path.basename(dsc)} /build/src >/dev/null",
        "DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q /build/src >/dev/null",
        # install hooks chown to the Amanda user: it must exist, with the id the image gives it
        f"useradd -r -u {UID} -g {GROUP} -d /var/lib/amanda -s /bin/bash {USER}",
        "cd /build/src && autoreconf -fi >/build/autoreconf.log 2>&1",
        # MAILER and -lssl as Debian's rules set them
        f"MAILER=/usr/bin/mail LIBS=-lssl ./configure {' '.join(CONFIGURE)} >/build/configure.log 2>&1",
        f"make -j{os.cpu_count() or 2} >/build/make.log 2>&1",
        "make install DESTDIR=/build/root >/build/install.log 2>&1",
        "tar -C /build/root --numeric-owner -cf /build/amanda.tar ."])
    show_logs = 'for f in "$1"/build/*.log; do echo "== $f"; tail -n 25 "$f"; done; exit 1'
    try:
        run(["mmdebstrap", "--variant=buildd", "--quiet",
             "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
             "--customize-hook=mkdir -p \"$1/build/in\"",
             f"--customize-hook=sync-in {shlex.quote(src)} /build/in",
             f"--customize-hook=chroot \"$1\" sh -c {shlex.quote(inside)} || {{ {show_logs}; }}",
             f"--customize-hook=copy-out /build/amanda.tar {shlex.quote(out)}",
             suite, "/dev/null", mirror(archive)], timeout=3600)
    except TestbedError as err:
        raise TestbedError(f"building Amanda ({suite}) with the Zmanda layout failed: {err}") from None
