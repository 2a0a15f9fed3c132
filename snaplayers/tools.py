"""The external commands layers may run: resolved to one absolute path, the same for the plugin
and for the helper's policy compiled from it, so privilege and code cannot drift apart."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from .errors import MissingTools

from .helper import SAFE_PATH      # only root-owned system directories

# tool -> (default absolute path on merged-/usr Debian and RPM systems, package that ships it)
TOOLS: dict[str, tuple] = {
    "lvs": ("/usr/sbin/lvs", "lvm2"),
    "lvcreate": ("/usr/sbin/lvcreate", "lvm2"),
    "lvremove": ("/usr/sbin/lvremove", "lvm2"),
    "pvs": ("/usr/sbin/pvs", "lvm2"),
    "vgimportclone": ("/usr/sbin/vgimportclone", "lvm2"),
    "lvchange": ("/usr/sbin/lvchange", "lvm2"),
    "vgchange": ("/usr/sbin/vgchange", "lvm2"),
    "cryptsetup": ("/usr/sbin/cryptsetup", "cryptsetup-bin"),
    "dmsetup": ("/usr/sbin/dmsetup", "dmsetup (lvm2)"),
    "mdadm": ("/usr/sbin/mdadm", "mdadm"),
    "partx": ("/usr/bin/partx", "util-linux"),
    "blockdev": ("/usr/sbin/blockdev", "util-linux"),
    "blkid": ("/usr/sbin/blkid", "util-linux"),
    "mount": ("/usr/bin/mount", "mount"),
    "umount": ("/usr/bin/umount", "mount"),
    "rm": ("/usr/bin/rm", "coreutils"),
    "mkdir": ("/usr/bin/mkdir", "coreutils"),
    "rmdir": ("/usr/bin/rmdir", "coreutils"),
    "visudo": ("/usr/sbin/visudo", "sudo"),
    "sudo": ("/usr/bin/sudo", "sudo"),
}


def path(tool: str) -> str:
    """Not resolved through symlinks: lvs is a link to lvm, which dispatches on its name."""
    return shutil.which(tool, path=SAFE_PATH) or TOOLS[tool][0]


def check(tools: Iterable[str]) -> None:
    """Report every missing tool at once, before anything is touched."""
    missing: list[str] = []
    for tool in sorted(set(tools)):
        if not os.access(path(tool), os.X_OK):
            missing.append(f"{tool} (package {TOOLS[tool][1]})")
    if missing:
        raise MissingTools("missing tools: " + ", ".join(missing))
