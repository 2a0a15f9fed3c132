"""`vg=<vg>+<lv>`: the guest's own volume group on the device below; one of its LVs.

The guest VG's name and UUIDs are the guest's: they can equal the host's (Debian's installer
names every VG alike) or, when the host sees the origin too, the origin's. So every command
here sees the snapshot's device alone (a `--config` device filter, which lvm2 2.03.11 has and
`--devices` is not), and `vgimportclone` first gives the copy in the snapshot a name and UUIDs
of its own: `snaplayers_<id>` (the id of its path, layers.node_id). Only then is anything activated, and never by the guest's
name, so the host's VG of that name is never touched. No metadata backup, archive or hints
file is written on the host.
"""

from __future__ import annotations

from ..device import dm_name
from ..helper import lvm_config
from . import PREFIX, Layer, parse_nameprefixes

CLONE_PREFIX = PREFIX + "_"
FIELDS = "lv_name,lv_attr,vg_uuid"


class GuestVg(Layer):
    kind = "vg"
    tools = ("pvs", "vgimportclone", "lvs", "lvchange", "vgchange")
    names = {"CLONEVG": CLONE_PREFIX + "{ID}", "CLONEDEV": "/dev/mapper/{CLONEVG}-{DMNAME}",
             # lvm_config() of one of snaplayers' devices, exactly (the helper checks it)
             "LVMCONF": "=lvmconf:{DEV}"}
    offers = "{CLONEDEV}"
    privileged = (
        ("pvs", "--config", "{LVMCONF}", "--noheadings", "--nameprefixes", "-o",
         "pv_name,vg_name,vg_uuid,pv_count", "{DEV}"),
        ("vgimportclone", "--config", "{LVMCONF}", "--basevgname", "{CLONEVG}", "{DEV}"),
        ("lvs", "--config", "{LVMCONF}", "--noheadings", "--nameprefixes", "-o", FIELDS,
         "{CLONEVG}"),
        ("lvchange", "--config", "{LVMCONF}", "--activate", "y", "{CLONEVG}/{NAME}"),
        ("vgchange", "--config", "{LVMCONF}", "--activate", "n", "{CLONEVG}"),
    )

    @classmethod
    def plan(cls, ctx, token, parent, spec):
        clone = CLONE_PREFIX + cls.id_for(parent, token)
        return cls(ctx, {
            "kind": cls.kind, "token": token.token(), "state": "planned",
            "vg": token.vg, "lv": token.lv, "pv": parent.device, "clone": clone,
            "device": f"/dev/mapper/{dm_name(clone, token.lv)}",
        }, parent)

    def kernel_names(self):
        clone, lv = self.rec["clone"], self.rec["lv"]
        return {"vg": clone, "lv": f"{clone}/{lv}", "dm": dm_name(clone, lv),
                "device": self.rec["device"]}

    def lvm(self, *argv: str, accept=(0,)):
        return self.run(argv[0], "--config", lvm_config(self.rec["pv"]), *argv[1:], accept=accept)

    def pv(self) -> dict[str, str]:
        res = self.lvm("pvs", "--noheadings", "--nameprefixes", "-o",
                       "pv_name,vg_name,vg_uuid,pv_count", self.rec["pv"], accept=(0, 5))
        rows = parse_nameprefixes(res.stdout) if res.returncode == 0 else []
        return rows[0] if rows else {}

    def clone_lvs(self) -> list[dict[str, str]]:
        res = self.lvm("lvs", "--noheadings", "--nameprefixes", "-o", FIELDS, self.rec["clone"],
                       accept=(0, 5))
        return parse_nameprefixes(res.stdout) if res.returncode == 0 else []

    def _pre_setup(self):
        pv, vg, where = self.pv(), self.rec["vg"], self.rec["pv"]
        if not pv:
            raise self.fail(f"{where} holds no LVM physical volume")
        if pv.get("vg_name") == self.rec["clone"]:
            # imported by an earlier set-up of this same stack into a snapshot another DLE
            # still holds: its new name says nothing of who wrote it, so it is not trusted
            raise self.fail(f"the guest's volume group on {where} is already imported as "
                            f"{pv['vg_name']} in the snapshot other DLEs of this disk still read; "
                            "set this DLE up again when they are done")
        if pv.get("vg_name", "").startswith(CLONE_PREFIX):
            raise self.fail(f"the guest's volume group on {where} is imported as "
                            f"{pv['vg_name']} for another DLE of this disk: two DLEs on LVs of "
                            "one guest VG are not supported")
        if pv.get("vg_name") != vg:
            raise self.fail(f"{where} belongs to volume group {pv.get('vg_name') or '(none)'}, "
                            f"not {vg}")
        if pv.get("pv_count") != "1":
            raise self.fail(f"volume group {vg} spans {pv.get('pv_count')} PVs; the snapshot holds "
                            "one, so its LVs cannot be read whole")
        self.rec["guest_vg_uuid"] = pv.get("vg_uuid", "")

    def _setup(self):
        self.lvm("vgimportclone", "--basevgname", self.rec["clone"], self.rec["pv"])
        pv = self.pv()
        if pv.get("vg_name") != self.rec["clone"]:
            raise self.fail(f"vgimportclone left {self.rec['pv']} in volume group "
                            f"{pv.get('vg_name') or '(none)'}, not {self.rec['clone']}")
        self.rec["vg_uuid"] = pv["vg_uuid"]
        names = [row["lv_name"] for row in self.clone_lvs()]
        if self.rec["lv"] not in names:
            raise self.fail(f"volume group {self.rec['vg']} in the snapshot has no LV "
                            f"{self.rec['lv']} (it has: {', '.join(names) or 'none'})")
        self.lvm("lvchange", "--activate", "y", f"{self.rec['clone']}/{self.rec['lv']}")

    def _post_setup(self):
        row = next((r for r in self.clone_lvs() if r["lv_name"] == self.rec["lv"]), {})
        if row.get("lv_attr", "")[4:5] != "a" or not self.ctx.host.wait_for(self.rec["device"]):
            raise self.fail(f"{self.rec['device']} is not active")

    def _live(self):
        return (self.clone_lvs() if self.ctx.host.exists(self.rec["pv"]) else []) or None

    def _teardown(self, rows):
        found = {row.get("vg_uuid") for row in rows}
        # the clone's name is ours and it is seen on our device only; its UUID, once known, too
        if self.rec.get("vg_uuid") and found != {self.rec["vg_uuid"]}:
            raise self.fail(f"volume group {self.rec['clone']} has UUID {', '.join(found)}, not "
                            f"{self.rec['vg_uuid']} that snaplayers made; not deactivating it")
        self.lvm("vgchange", "--activate", "n", self.rec["clone"])
