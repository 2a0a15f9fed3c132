"""In a storage host node: a loop-backed PV, a VG and LVs, each exported over iSCSI by LIO.

Through targetcli. Usage: python3 - create|tpg '<json>'; prints JSON."""

import json
import os
import sys


# sh(): prelude.py's, which testbed.fixture.script() puts before this text


def targetcli(commands):
    if not sh("pgrep", "-x", "dbus-daemon", check=False).strip():
        os.makedirs("/run/dbus", exist_ok=True)
        if os.path.exists("/run/dbus/pid"):     # left by a restarted container
            os.unlink("/run/dbus/pid")
        sh("dbus-daemon", "--system", "--fork")     # targetcli aborts without a system bus
    # LIO is kernel-global: never clearconfig or save the whole tree, only our own objects.
    # One command per call: targetcli 2.1.53 drops lines of a batch read from a pipe (measured).
    sh("targetcli", "set", "global", "auto_save_on_exit=false")
    for command in commands:
        sh("targetcli", *command.split())


def create(spec):
    workdir = spec["workdir"]
    os.makedirs(workdir, exist_ok=True)
    os.makedirs("/run/lock/lvm", exist_ok=True)
    pv = os.path.join(workdir, "pv.img")
    # room for a 20%ORIGIN snapshot of every LV at once (a test sets up every DLE together),
    # plus an LV of 64M the origin-array test makes; the file is sparse
    total = sum(v["size_mb"] * 5 // 4 for v in spec["volumes"]) + 256
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
    commands = []
    luns = {}
    for i, vol in enumerate(spec["volumes"]):
        sh("lvcreate", "-q", "-y", "-Wn", "-L", f"{vol['size_mb']}M", "-n", vol["lv"], vg)
        backstore = f"{spec['prefix']}_{spec['host']}_{vol['lv']}"
        commands.append(f"/backstores/block create {backstore} /dev/{vg}/{vol['lv']}")
        luns[vol["lv"]] = i
    iqn = spec["iqn"]
    commands.append(f"/iscsi create {iqn}")
    for vol in spec["volumes"]:
        commands.append(f"/iscsi/{iqn}/tpg1/luns create /backstores/block/"
                        f"{spec['prefix']}_{spec['host']}_{vol['lv']}")
    commands.append(f"/iscsi/{iqn}/tpg1 set attribute authentication=0 generate_node_acls=1 "
                    "demo_mode_write_protect=0")
    targetcli(commands)
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
    targetcli([f"/iscsi/{spec['iqn']}/tpg1 {spec['action']}"])
    return {spec["iqn"]: spec["action"] + "d"}


if __name__ == "__main__":
    action, spec = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"create": create, "tpg": tpg}[action](spec)))
