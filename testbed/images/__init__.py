"""The node images, made without a registry and tagged by a hash of their inputs.

A base per Debian suite made natively by mmdebstrap and `docker import`ed, then
images/node/Dockerfile FROM it: an image is rebuilt only when its inputs change."""

from __future__ import annotations

import os
import shutil
import tempfile

from .. import cache
from ..config import Config
from ..debian import mmdebstrap
from ..progress import Steps
from ..run import TestbedError, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "images")
SUITES = ("bullseye", "bookworm", "trixie")


def packages():
    with open(os.path.join(IMAGES, "packages")) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


def _has(client, tag: str) -> bool:
    """Whether the engine holds tag; an engine that does not answer raises."""
    import docker.errors
    try:
        client.images.get(tag)
        return True
    except docker.errors.NotFound:      # ImageNotFound, or a 404 worded otherwise
        return False


def base(client, suite: str, steps: Steps, archive: str) -> str:
    digest = cache.key(suite, packages(), 1)
    tag = f"sltb-base:{suite}-{digest}"
    if _has(client, tag):
        with steps.step(f"base image {suite}", cached=True):
            return tag
    art = cache.Artifact("base", f"{suite}-{digest}")
    with steps.step(f"base rootfs {suite} (mmdebstrap, native)", cached=art.done):
        if not art.done:
            with art.building():
                mmdebstrap(suite, packages(), art.path("rootfs.tar"), archive)
    with steps.step(f"import base image {suite} ({os.path.getsize(art.path('rootfs.tar')) >> 20} MiB)"):
        client.api.import_image_from_file(art.path("rootfs.tar"), repository=tag.split(":")[0],
                                          tag=tag.split(":")[1])
    return tag


def _context(tmp: str) -> str:
    """images/node plus the plugin's Debian package built from this working tree by
    debian/build-deb, which the image installs with apt, as an admin would."""
    ctx = os.path.join(tmp, "node")
    shutil.copytree(os.path.join(IMAGES, "node"), ctx)
    shutil.copy(os.path.join(IMAGES, "packages"), os.path.join(ctx, "packages"))
    built = os.path.join(tmp, "deb")
    deb = run([os.path.join(ROOT, "debian", "build-deb"), built], cwd=ROOT).stdout.decode().split()[-1]
    shutil.move(deb, os.path.join(ctx, "snaplayers.deb"))
    return ctx


def _tree_hash(path: str) -> str:
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    return cache.key([os.path.relpath(f, path) for f in files], cache.file_hash(*files))


def _plugin_hash() -> str:
    """What the plugin's package is made of (debian/build-deb's inputs)."""
    files = sorted(os.path.join(d, f) for top in ("snaplayers", "debian")
                   for d, _, fs in os.walk(os.path.join(ROOT, top)) for f in fs
                   if "__pycache__" not in d)
    return cache.file_hash(*files, os.path.join(ROOT, "README.md"))


LAYOUTS = ("debian", "zmanda")


def node(client, config: Config, steps: Steps = None) -> str:
    """The node image of config's suite; layout "zmanda": Amanda rebuilt with Zmanda's RPM layout."""
    steps = steps or Steps("images")
    if config.layout not in LAYOUTS:
        raise TestbedError(f"layout {config.layout!r}: one of {', '.join(LAYOUTS)}")
    tag = debian_node(client, config.suite, steps, config.mirror)
    return tag if config.layout == "debian" else zmanda_node(client, config, tag, steps)


def built_first(config: Config, steps: Steps):
    """VmEngine.up's prepare: config's node image built in the engine it is given (the native
    dockerd, before a boot), once however many callers boot at once."""
    def prepare(client) -> None:
        with cache.lock("images"):
            node(client, config, steps)
    return prepare


def zmanda_node(client, config: Config, base_tag: str, steps: Steps) -> str:
    from .zmanda import GROUP, UID, USER, amanda_tar
    suite = config.suite
    tar = amanda_tar(config, steps)
    context = os.path.join(IMAGES, "zmanda")
    digest = cache.key(base_tag, _tree_hash(context), cache.file_hash(tar), _tree_hash(os.path.join(ROOT, "rpm")))
    tag = f"sltb-node:{suite}-zmanda-{digest}"
    with steps.step(f"node image {suite}, Zmanda layout", cached=_has(client, tag)):
        if not _has(client, tag):
            with tempfile.TemporaryDirectory() as tmp:
                ctx = os.path.join(tmp, "zmanda")
                shutil.copytree(context, ctx)
                shutil.copy(tar, os.path.join(ctx, "amanda.tar"))
                _rpm_payload(tmp, ctx)
                args = {"BASE": base_tag, "AMANDA_USER": USER, "AMANDA_GROUP": GROUP, "AMANDA_UID": str(UID)}
                client.images.build(path=ctx, tag=tag, buildargs=args,
                                    rm=True, forcerm=True, labels={"io.snaplayers.testbed": "image"})
    return tag


def _rpm_payload(tmp: str, ctx: str) -> None:
    """The plugin's RPM built from this tree (rpm/build) as the Zmanda image takes it: its payload
    as a root-owned tar, and its %post scriptlet."""
    import tarfile
    built, payload = os.path.join(tmp, "rpm"), os.path.join(tmp, "payload")
    rpm = run([os.path.join(ROOT, "rpm", "build"), built]).stdout.decode().split()[-1]
    os.mkdir(payload)
    cpio = run(["rpm2cpio", rpm]).stdout
    run(["cpio", "-idm", "--quiet", "-D", payload], input=cpio)
    # the payload's own entries only: directories it does not own (/usr, /etc) stay the image's
    entries = run(["cpio", "-t", "--quiet"], input=cpio).stdout.decode().split()
    with tarfile.open(os.path.join(ctx, "snaplayers-rpm.tar"), "w") as out:
        for entry in entries:
            info = out.gettarinfo(os.path.join(payload, entry), arcname=os.path.normpath(entry))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(os.path.join(payload, entry), "rb") as f:
                    out.addfile(info, f)
            else:
                out.addfile(info)
    post = run(["rpm", "-qp", "--dbpath", os.path.join(tmp, "rpmdb"), "--qf", "%{POSTIN}", rpm]).stdout
    with open(os.path.join(ctx, "snaplayers.post"), "wb") as f:
        f.write(post)


def debian_node(client, suite: str, steps: Steps, archive: str) -> str:
    base_tag = base(client, suite, steps, archive)
    digest = cache.key(base_tag, _tree_hash(os.path.join(IMAGES, "node")), packages(), _plugin_hash())
    tag = f"sltb-node:{suite}-{digest}"
    with steps.step(f"node image {suite}", cached=_has(client, tag)):
        if not _has(client, tag):
            with tempfile.TemporaryDirectory() as tmp:
                client.images.build(path=_context(tmp), tag=tag, buildargs={"BASE": base_tag},
                                    rm=True, forcerm=True,
                                    labels={"io.snaplayers.testbed": "image"})
    return tag
