"""The implicit last layer: mount the filesystem read-only at the encoded mount point.

The guest's filesystem was live in another kernel, so the snapshot holds it as after a power
loss: a dirty journal. Mounting `ro` lets the kernel replay that journal into the writable
snapshot (never the origin); `noload`/`norecovery` would show a state that never existed on
disk, or lose files, so they are an explicit opt-in (property recovery NO).

What a guest's filesystem holds is the guest owner's: setuid binaries and device nodes there
must mean nothing on the storage host, so every mount is nosuid,nodev,noexec. btrfs is not
offered: a multi-device btrfs is assembled by fsid from whatever devices the host sees, which
can pull in an origin LV, and its log replay would then write there.
"""

from __future__ import annotations

import re

from ..errors import MountVanished, SnaplayersError
from . import Layer, parse_export

HOSTILE = "nosuid,nodev,noexec"     # the guest's content is data, never programs or devices
# fstype -> (options with journal replay, options without)
OPTIONS = {
    "ext2": (f"ro,{HOSTILE}", f"ro,{HOSTILE}"),
    "ext3": (f"ro,{HOSTILE}", f"ro,{HOSTILE},noload"),
    "ext4": (f"ro,{HOSTILE}", f"ro,{HOSTILE},noload"),
    # nouuid: the origin's filesystem may be mounted in this same kernel with the same UUID
    "xfs": (f"ro,{HOSTILE},nouuid", f"ro,{HOSTILE},nouuid,norecovery"),
}


class ReadOnlyMount(Layer):
    kind = "mount"
    tools = ("blkid", "mount", "umount", "mkdir", "rmdir")
    # the encoded directory always starts with the source token, so never '.' or '..'; the
    # helper also checks on disk that it is a plain directory of root's in a root-owned base
    names = {"MOUNTPOINT": "{MOUNTBASE}/lvm=[A-Za-z0-9_.+=,-]+"}
    privileged = (
        ("blkid", "--probe", "--output", "export", "{DEV}"),
        *(("mount", "-t", fstype, "-o", re.escape(options), "{DEV}", "{MOUNTPOINT}")
          for fstype, pair in sorted(OPTIONS.items()) for options in sorted(set(pair))),
        ("umount", "{MOUNTPOINT}"),
        ("mkdir", "{MOUNTPOINT}"),
        ("rmdir", "{MOUNTPOINT}"),
    )

    @classmethod
    def plan(cls, ctx, token, parent, spec):
        return cls(ctx, {"kind": cls.kind, "token": "mount", "state": "planned",
                         "mountpoint": spec.mountpoint, "mount_base": spec.mount_base,
                         "source": parent.device}, parent)

    @property
    def device(self):
        return self.rec["mountpoint"]

    def key(self):
        below = self.parent.key() if self.parent is not None else ""
        return f"{below},mount:{self.rec['mountpoint']}"

    def kernel_names(self):
        return {"mountpoint": self.rec["mountpoint"]}

    def check_left(self):
        rows = self.mounted()
        if not rows or rows[-1]["majmin"] != self.rec.get("source_rdev"):
            raise MountVanished(f"{self.rec['mountpoint']} is no longer mounted from "
                                f"{self.rec['source']}: what was read there is not the snapshot")

    @staticmethod
    def check_base(host, base: str) -> None:
        """Before anything is made: whoever can write the mount base (or a directory above it)
        can plant a symlink there that mount and umount follow."""
        problem = host.unsafe_dir(base)
        if problem:
            raise SnaplayersError(f"mount base {base} is not root's alone ({problem}): run `snaplayers "
                       f"install --user <amanda user> --mount-base {base}` as root, or: "
                       f"install -d -o root -g <amanda group> -m 0750 {base}")

    def mounted(self):
        return [m for m in self.ctx.host.mounts() if m["mountpoint"] == self.rec["mountpoint"]]

    def _pre_setup(self):
        host, mp = self.ctx.host, self.rec["mountpoint"]
        if self.rec["source"] is None and self.parent is not None:
            self.rec["source"] = self.parent.device
        if self.mounted():
            raise self.fail(f"{mp} is already a mount point")
        if host.exists(mp) and (not host.isdir(mp) or host.realpath(mp) != mp or host.listdir(mp)):
            raise self.fail(f"{mp} exists and is not an empty directory")
        res = self.run("blkid", "--probe", "--output", "export", self.rec["source"], accept=(0, 2))
        fstype = parse_export(res.stdout).get("TYPE", "")
        if fstype not in OPTIONS:
            raise self.fail(f"{self.rec['source']} holds {fstype or 'no filesystem'}; "
                            f"supported: {', '.join(sorted(OPTIONS))}")
        replay, no_replay = OPTIONS[fstype]
        self.rec.update(fstype=fstype, options=replay if self.ctx.settings.recovery else no_replay,
                        source_rdev=host.rdev(self.rec["source"]))

    def _setup(self):
        if not self.ctx.host.exists(self.rec["mountpoint"]):
            self.run("mkdir", self.rec["mountpoint"])
        self.run("mount", "-t", self.rec["fstype"], "-o", self.rec["options"], self.rec["source"],
                 self.rec["mountpoint"])

    def _post_setup(self):
        rows = self.mounted()
        if not rows or rows[-1]["majmin"] != self.rec["source_rdev"]:
            raise self.fail(f"{self.rec['mountpoint']} is not mounted from {self.rec['source']}")
        missing = {"ro", *HOSTILE.split(",")} - set(rows[-1]["options"].split(","))
        if missing:
            raise self.fail(f"{self.rec['mountpoint']} is mounted without {','.join(sorted(missing))}")

    def _live(self):
        rows, mp = self.mounted(), self.rec["mountpoint"]
        return rows if rows or self.ctx.host.exists(mp) else None

    def _teardown(self, rows):
        mp = self.rec["mountpoint"]
        if rows:
            if rows[-1]["majmin"] != self.rec.get("source_rdev"):
                raise self.fail(f"{mp} is mounted from {rows[-1]['source']}, not from "
                                f"{self.rec['source']} as set up; not unmounting it")
            self.run("umount", mp)
        # the directory is named by this stack under mount_base: ours to remove once empty
        if self.ctx.host.exists(mp) and not self.ctx.host.listdir(mp):
            self.run("rmdir", mp)
        if not rows and self.rec.get("state") == "up":
            # set up and then gone before the POST call: whatever was read there was the bare
            # directory (dmeventd unmounts a monitored snapshot that overflows: seen on trixie)
            raise MountVanished(f"{mp} was no longer mounted at tear-down: it was unmounted while "
                                "Amanda read it, so what was read is not the snapshot")
