"""In a storage host node: a loop-backed PV, a VG and LVs, each exported over iSCSI by LIO.

Through rtslib-fb, targetcli's own library: no D-Bus daemon, no command line to parse.
LIO is kernel-wide, shared with other testbeds: only our own objects are made or changed,
nothing is saved. Usage: python3 - create|tpg '<json>'; prints JSON."""

import json
import os
import sys

# sh(): prelude.py's, which testbed.fixture.script() puts before this text


def export(iqn, backstores):
    """What `targetcli /iscsi create` and `.../luns create` make: a target, TPG 1 enabled, the
    default portal on every address, one LUN per backstore in order; no ACLs, no CHAP."""
    from rtslib_fb import LUN, TPG, BlockStorageObject, FabricModule, NetworkPortal, RTSLibError, Target
    objects = [BlockStorageObject(name, dev=dev) for name, dev in backstores]
    tpg = TPG(Target(FabricModule("iscsi"), iqn, mode="create"), 1, mode="create")
    try:        # as targetcli: the engine's anchor may own 0.0.0.0:3260 already (iscsid.py)
        NetworkPortal(tpg, "0.0.0.0", 3260, mode="create")
    except RTSLibError:
        pass
    for lun, so in enumerate(objects):
        LUN(tpg, lun, so)
    for name, value in (("authentication", "0"), ("generate_node_acls", "1"), ("demo_mode_write_protect", "0")):
        tpg.set_attribute(name, value)
    tpg.enable = True


def create(spec):
    workdir = spec["workdir"]
    os.makedirs(workdir, exist_ok=True)
    os.makedirs("/run/lock/lvm", exist_ok=True)
    pv = os.path.join(workdir, "pv.img")
    # room for a 20%ORIGIN snapshot of every LV at once (a test sets up every DLE together),
    # plus an LV of 64M the origin-array test makes; the file is sparse
    thin = [v for v in spec["volumes"] if v.get("thin")]
    # the pool holds each thin LV twice over: its every block, and what the VM writes meanwhile
    pool_mb = sum(2 * v["size_mb"] for v in thin)
    total = sum(v["size_mb"] * 5 // 4 for v in spec["volumes"] if not v.get("thin")) + pool_mb + 256
    total += 10 * len(spec.get("plain", {}))
    sh("truncate", "-s", f"{total}M", pv)
    loop = sh("losetup", "--find", "--show", pv).strip()
    # a VG named like a guest's, on a PV of its own (see topology.clash_vgs)
    clash_loop = None
    if len(spec.get("clash_vgs", [])) > 1:
        sys.exit("one VG named like a guest's per storage host")
    if spec.get("clash_vgs"):
        sh("truncate", "-s", "64M", os.path.join(workdir, "clash.img"))
        clash_loop = sh("losetup", "--find", "--show", os.path.join(workdir, "clash.img")).strip()
    # this node sees only its own PVs: other testbeds' loops share the kernel
    accept = "".join(f"\"a|^{d}$|\", " for d in (loop, clash_loop) if d)
    with open("/etc/lvm/lvmlocal.conf", "w") as f:
        f.write("activation {\n udev_sync = 0\n udev_rules = 0\n}\n"
                f"devices {{\n obtain_device_list_from_udev = 0\n external_device_info_source = \"none\"\n"
                f" global_filter = [ {accept}\"r|.*|\" ]\n}}\n")
    for clash_vg, clash_lv in spec.get("clash_vgs", []):
        sh("pvcreate", "-q", clash_loop)
        sh("vgcreate", "-q", clash_vg, clash_loop)
        # inactive: the name exists in this host's LVM, nothing of it in the shared /dev
        sh("lvcreate", "-q", "-y", "-an", "-Zn", "-L", "8M", "-n", clash_lv, clash_vg)
    vg = spec["vg"]
    sh("pvcreate", "-q", loop)
    sh("vgcreate", "-q", vg, loop)
    luns = {}
    backstores = []
    pool = f"{vg}/tbpool"
    if thin:
        sh("lvcreate", "-q", "-y", "-Wn", "-L", f"{pool_mb}M", "-T", pool)
    for i, vol in enumerate(spec["volumes"]):
        if vol.get("thin"):
            sh("lvcreate", "-q", "-y", "-V", f"{vol['size_mb']}M", "-T", pool, "-n", vol["lv"])
            # every block written once: what a VM disk copied in reports (Data% 100)
            sh("dd", "if=/dev/zero", f"of=/dev/{vg}/{vol['lv']}", "bs=1M", f"count={vol['size_mb']}",
               "oflag=direct", "status=none")
        else:
            sh("lvcreate", "-q", "-y", "-Wn", "-L", f"{vol['size_mb']}M", "-n", vol["lv"], vg)
        backstores.append((f"{spec['prefix']}_{spec['host']}_{vol['lv']}", f"/dev/{vg}/{vol['lv']}"))
        luns[vol["lv"]] = i
    export(spec["iqn"], backstores)
    # never exported, no filesystem: what discover must skip, and say why
    for lv, content in sorted(spec.get("plain", {}).items()):
        sh("lvcreate", "-q", "-y", "-Wn", "-Zy", "-L", "8M", "-n", lv, vg)
        if content == "swap":
            sh("mkswap", "-q", f"/dev/{vg}/{lv}")
        elif content:
            sys.exit(f"plain LV {lv}: unknown content {content!r}")
    # where the plugin's luks=<key> layer finds <key>.key: root's alone (cryptsetup runs as root)
    os.makedirs("/etc/snaplayers/keys", mode=0o700, exist_ok=True)
    for name, key in spec.get("keys", {}).items():
        path = f"/etc/snaplayers/keys/{name}.key"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(key)
    return {"loop": loop, "luns": luns}


def tpg(spec):
    """Disable (drops its sessions and refuses logins, as a target restart does) or enable."""
    if spec["action"] not in ("enable", "disable"):
        sys.exit(f"tpg: unknown action {spec['action']!r}")
    from rtslib_fb import TPG, FabricModule, Target
    tpg = TPG(Target(FabricModule("iscsi"), spec["iqn"], mode="lookup"), 1, mode="lookup")
    tpg.enable = spec["action"] == "enable"
    return {spec["iqn"]: spec["action"] + "d"}


if __name__ == "__main__":
    action, spec = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"create": create, "tpg": tpg}[action](spec)))
