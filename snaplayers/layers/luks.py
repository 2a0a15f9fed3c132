"""`luks=<key>`: open the LUKS1/LUKS2 container on the device below with <key-dir>/<key>.key.

Opened read-write like every layer under the mount: the filesystem's journal is replayed into
the snapshot through it. Only root (cryptsetup, through sudo) reads the key file; the key never
appears in an argv, a log line or the journal, and `dmsetup table` (which prints a LUKS1 key)
is never run on this mapping.
"""

from __future__ import annotations

from . import DM_PREFIX, Layer
from .part import depth


class LuksOpen(Layer):
    kind = "luks"
    tools = ("cryptsetup", "dmsetup")
    names = {"CRYPTNAME": DM_PREFIX + "{ID}-[0-9]{1,2}c", "CRYPTDEV": "/dev/mapper/{CRYPTNAME}",
             # no '/' and never hidden: a key file directly in key-dir, read by root only
             "KEYFILE": r"{KEYDIR}/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\.key"}
    offers = "{CRYPTDEV}"
    privileged = (
        ("cryptsetup", "isLuks", "{DEV}"),
        ("cryptsetup", "open", "--type", "luks", "--key-file", "{KEYFILE}", "{DEV}", "{CRYPTNAME}"),
        ("cryptsetup", "status", "{CRYPTNAME}"),
        ("cryptsetup", "close", "{CRYPTNAME}"),
        ("dmsetup", "mknodes", "{CRYPTNAME}"),
    )

    @classmethod
    def plan(cls, ctx, token, parent, spec):
        mapping = f"{DM_PREFIX}{cls.id_for(parent, token)}-{depth(parent)}c"
        return cls(ctx, {"kind": cls.kind, "token": token.token(), "state": "planned",
                         "key_file": f"{ctx.settings.key_dir}/{token.key}.key",
                         "parent": parent.device, "mapping": mapping,
                         "device": f"/dev/mapper/{mapping}"}, parent)

    def kernel_names(self):
        return {"dm": self.rec["mapping"], "device": self.rec["device"]}

    def status(self) -> dict[str, str] | None:
        res = self.run("cryptsetup", "status", self.rec["mapping"], accept=(0, 4))
        if res.returncode != 0:
            return None
        return {k.strip(): v.strip() for k, _, v in
                (line.partition(":") for line in res.stdout.splitlines()[1:]) if k.strip()}

    def _pre_setup(self):
        parent = self.rec["parent"]
        if self.run("cryptsetup", "isLuks", parent, accept=(0, 1)).returncode != 0:
            raise self.fail(f"{parent} holds no LUKS header")
        if self.status() is not None:
            raise self.fail(f"mapping {self.rec['mapping']} is open and not recorded by "
                            "snaplayers; close it by hand after checking what it is")
        self.rec["parent_rdev"] = self.ctx.host.rdev(parent)

    def _setup(self):
        res = self.run("cryptsetup", "open", "--type", "luks", "--key-file", self.rec["key_file"],
                       self.rec["parent"], self.rec["mapping"], accept=(0, 1, 2))
        if res.returncode == 2:     # cryptsetup's "no permission (bad passphrase)"
            raise self.fail(f"key file {self.rec['key_file']} does not open {self.rec['parent']} "
                            "(wrong key)")
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["cryptsetup failed"])[-1]
            raise self.fail(f"cannot open {self.rec['parent']} with key file "
                            f"{self.rec['key_file']}: {last}")
        # without udev libdevmapper may leave /dev/mapper to us (see the part layer)
        self.run("dmsetup", "mknodes", self.rec["mapping"])

    def _post_setup(self):
        found = self.status() or {}
        if not found.get("type", "").startswith("LUKS") or not self.ctx.host.wait_for(self.device):
            raise self.fail(f"{self.device} is not an open LUKS mapping")

    def _live(self):
        return self.status()

    def _teardown(self, live):
        device = live.get("device", "")
        ours = (self.ctx.host.exists(device) and
                self.ctx.host.rdev(device) == self.rec.get("parent_rdev"))
        if not live.get("type", "").startswith("LUKS") or not ours:
            raise self.fail(f"mapping {self.rec['mapping']} is {live.get('type', '?')} on "
                            f"{device or '?'}, not LUKS on {self.rec['parent']} as opened; "
                            "not closing it")
        self.run("cryptsetup", "close", self.rec["mapping"])
        self.run("dmsetup", "mknodes", self.rec["mapping"])

