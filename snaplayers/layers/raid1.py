"""`raid1`: one leg of an md RAID1, assembled degraded under a fresh array UUID.

mdadm knows the array by its link `/dev/md/snaplayers-<id>`; the layers above get the kernel's
node (`/dev/mdN`): without udev, mdadm makes /dev/md root:disk 0770, and the Amanda user is not
in group disk. The helper admits an `/dev/mdN` only when the kernel says every leg of it is one
of snaplayers' mappings.
"""

from __future__ import annotations

import os
import re

from . import PREFIX, Layer, parse_export

MD_PREFIX = PREFIX + "-"
MD_LINKS = "/dev/md/"           # where mdadm puts an array's link under its name


def fresh_uuid() -> str:
    h = os.urandom(16).hex()      # not the uuid module: it costs a noticeable share of startup
    return ":".join(h[i:i + 8] for i in range(0, 32, 8))


class DegradedRaid1(Layer):
    kind = "raid1"
    tools = ("mdadm", "rm")
    names = {"MD": re.escape(MD_LINKS + MD_PREFIX) + "{ID}", "MDDEV": "/dev/md[0-9]{1,4}"}
    offers = "{MDDEV}"
    privileged = (
        ("mdadm", "--examine", "--export", "{DEV}"),
        ("mdadm", "--assemble", "{MD}", "--run", "--update=uuid", "--uuid={UUID}", "{DEV}"),
        ("mdadm", "--detail", "--export", "{MD}"),
        ("mdadm", "--stop", "{MD}"),
        ("rm", "-f", "--", "{MD}"),
    )
    new_uuid = staticmethod(fresh_uuid)

    @classmethod
    def plan(cls, ctx, token, parent, spec):
        name = MD_PREFIX + cls.id_for(parent, token)
        return cls(ctx, {
            "kind": cls.kind, "token": token.token(), "state": "planned",
            # device: the link until the kernel's node is known (after assembly)
            "name": name, "md": MD_LINKS + name, "device": MD_LINKS + name,
            "member": parent.device,
            # written into the snapshot's superblock only: the origin array keeps its own, so
            # the copy can never be mistaken for (or collide with) a live array in this kernel
            "uuid": cls.new_uuid(),
        }, parent)

    def kernel_names(self):
        return {"md_link": self.rec["md"], "md_name": self.rec["name"],
                "device": self.rec["device"]}

    def _pre_setup(self):
        member = self.rec["member"]
        res = self.run("mdadm", "--examine", "--export", member, accept=(0, 1, 2))
        found = parse_export(res.stdout)
        if res.returncode != 0 or not found.get("MD_LEVEL"):
            raise self.fail(f"{member} carries no md superblock")
        if found["MD_LEVEL"] != "raid1":
            raise self.fail(f"{member} is a member of a {found['MD_LEVEL']} array, not raid1")
        self.rec["origin_uuid"] = found.get("MD_UUID", "")
        # the kernel's word, not /dev's: without udev a stopped array's link can linger
        if self._detail():
            raise self.fail(f"{self.rec['md']} is an active array not recorded by "
                            "snaplayers; stop it by hand after checking what it is")

    def _setup(self):
        with self.ctx.alloc_lock():     # mdadm picks a free minor: two DLEs must not race for it
            self.run("mdadm", "--assemble", self.rec["md"], "--run", "--update=uuid",
                     f"--uuid={self.rec['uuid']}", self.rec["member"])

    def _detail(self):
        res = self.run("mdadm", "--detail", "--export", self.rec["md"], accept=(0, 1, 2))
        return parse_export(res.stdout) if res.returncode == 0 else {}

    def _post_setup(self):
        detail = self._detail()
        if detail.get("MD_UUID") != self.rec["uuid"] or detail.get("MD_LEVEL") != "raid1":
            raise self.fail(f"{self.rec['md']} came up as {detail.get('MD_LEVEL', 'nothing')} "
                            f"with UUID {detail.get('MD_UUID', '-')}, not the one assembled")
        # the array that holds our member is the one just assembled (sysfs: anyone may read it)
        arrays = [h for h in self.ctx.host.holders(self.rec["member"]) if h.startswith("md")]
        if len(arrays) != 1:
            raise self.fail(f"{self.rec['member']} is held by {', '.join(arrays) or 'no array'}, "
                            f"not by the one array {self.rec['md']}")
        self.rec.update(kernel_name=arrays[0], device=f"/dev/{arrays[0]}")
        if not self.ctx.host.wait_for(self.rec["device"]):
            raise self.fail(f"{self.rec['device']} did not appear")

    def _live(self):
        # an array mdadm cannot describe is not one we can check, so not one we stop
        return self._detail() or None

    def _teardown(self, detail):
        found = detail.get("MD_UUID")
        if found != self.rec["uuid"]:
            raise self.fail(f"{self.rec['md']} has UUID {found}, not {self.rec['uuid']} "
                            "that snaplayers assembled; not stopping it")
        self.run("mdadm", "--stop", self.rec["md"])
        # without udev nobody removes the array's link, and a stale one points at whichever
        # array gets that minor next (seen: another DLE's array, refused as not ours); the
        # Amanda user cannot look into /dev/md to see whether udev did
        self.run("rm", "-f", "--", self.rec["md"])
