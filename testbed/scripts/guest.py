"""In the guest node, as a VM would: a layered stack on the storage hosts' LUNs, data, manifests.

Finds the LUNs (the testbed logged in with the engine's initiator), builds md RAID1 arrays (one
leg per storage host), GPT partitions and filesystems, writes a data set and its sha256 manifest,
and keeps everything mounted. Usage: python3 - ACTION '<json>'."""

import glob
import hashlib
import json
import os
import random
import subprocess
import sys
import time


# sh(): prelude.py's, which testbed.fixture.script() puts before this text


def wait(path, seconds=20):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"{path} did not appear")
        time.sleep(0.1)
    return path


def disks_of(iqn):
    """LUN -> /dev/sdX of the session logged in to iqn (sysfs: no udev in here)."""
    for session in glob.glob("/sys/class/iscsi_session/session*"):
        if open(f"{session}/targetname").read().strip() != iqn:
            continue
        found = {}
        for block in glob.glob(f"{session}/device/target*/*:*:*:*/block/*"):
            lun = int(block.split("/")[-3].split(":")[-1])
            found[lun] = "/dev/" + os.path.basename(block)
        return found
    return {}


def disks(targets):
    """The testbed logged in with the engine's initiator; the LUNs appear here as a VM's disks."""
    devices = {}
    for t in targets:
        deadline = time.time() + 30
        while len(disks_of(t["iqn"])) < len(t["luns"]):
            if time.time() > deadline:
                sys.exit(f"LUNs of {t['iqn']} did not appear: {disks_of(t['iqn'])}")
            time.sleep(0.2)
        found = disks_of(t["iqn"])
        for lv, lun in t["luns"].items():
            devices[f"{t['host']}/{lv}"] = wait(found[lun])
    return devices


def partition_node(dev, n):
    real = os.path.realpath(dev)
    return f"{real}p{n}" if real[-1].isdigit() else f"{real}{n}"


def data_set(root, name, files):
    """Mixed sizes, nested directories, deterministic content; fsynced."""
    rng = random.Random(name)
    for i in range(files):
        d = os.path.join(root, "data", f"dir{i % 4}", f"sub{i % 3}")
        os.makedirs(d, exist_ok=True)
        size = rng.choice([0, 1, 511, 4096, 65537, 262144, 1 << 20])
        with open(os.path.join(d, f"file{i:03d}.bin"), "wb") as f:
            f.write(rng.randbytes(size) if hasattr(rng, "randbytes") else os.urandom(size))
            f.flush()
            os.fsync(f.fileno())


def manifest(root, skip=("lost+found", "live")):
    """sha256 of every file under root, but the live writer's log and lost+found."""
    lines = []
    for d, _, fs in sorted(os.walk(root)):
        for f in sorted(fs):
            path = os.path.join(d, f)
            if os.path.islink(path) or os.path.relpath(path, root).split("/")[0] in skip:
                continue
            with open(path, "rb") as fh:
                lines.append(f"{hashlib.sha256(fh.read()).hexdigest()}  {os.path.relpath(path, root)}")
    return "\n".join(sorted(lines, key=lambda ln: ln[66:])) + "\n"


def luks(spec, v, dev):
    """A LUKS2 container, as an encrypted VM disk: cheap PBKDF, an emulated CPU opens it."""
    os.makedirs("/etc/testbed/keys", mode=0o700, exist_ok=True)
    key = f"/etc/testbed/keys/{v['luks']}.key"
    with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(spec["keys"][v["luks"]])
    sh("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
       "--pbkdf-force-iterations", "1000", "--key-file", key, dev)
    name = f"{spec['prefix']}-{v['name']}-crypt"
    sh("cryptsetup", "open", "--key-file", key, dev, name)
    sh("dmsetup", "mknodes", name)
    return wait(f"/dev/mapper/{name}")


def guest_lvm(spec, v, dev):
    """The guest's own VG on dev, named like a storage host's VG; this container's LVM sees
    only this PV (the storage hosts' PVs share the kernel)."""
    pv = os.path.realpath(dev)
    with open("/etc/lvm/lvmlocal.conf", "w") as f:
        f.write("activation {\n udev_sync = 0\n udev_rules = 0\n}\n"
                "devices {\n obtain_device_list_from_udev = 0\n external_device_info_source = \"none\"\n"
                f" global_filter = [ \"a|^{pv}$|\", \"r|.*|\" ]\n}}\n")
    os.makedirs("/run/lock/lvm", exist_ok=True)
    sh("pvcreate", "-q", "-y", pv)
    vg, lv = v["vg"]
    sh("vgcreate", "-q", vg, pv)
    sh("lvcreate", "-q", "-y", "-Wn", "-l", "100%FREE", "-n", lv, vg)
    return wait(f"/dev/{vg}/{lv}")


def layout(variants):
    """Disk (its legs) -> {partition: variant}: several variants may share one VM disk."""
    disks = {}
    for v in variants:
        disks.setdefault(tuple(map(tuple, v["legs"])), {})[v["partition"] or 0] = v["name"]
    return disks


def partition(dev, parts):
    """A GPT with partitions 1..the highest used: spares of 32 MiB, a filesystem's 96 MiB, the
    highest the rest (an xfs wants >= 300 MB)."""
    sh("parted", "-s", dev, "mklabel", "gpt")
    start, last = 1, max(parts)
    for n in range(1, last + 1):
        size = 96 if n in parts else 32
        end = "100%" if n == last else f"{start + size}MiB"
        sh("parted", "-s", dev, "mkpart", parts.get(n, f"spare{n}"), f"{start}MiB", end)
        start += size


def create(spec):
    devices = disks(spec["targets"])
    disks_of = layout(spec["variants"])
    made = {}           # disk -> its md array or device, partitioned once
    out = {}
    for v in spec["variants"]:
        legs = [devices[f"{h}/{lv}"] for h, lv in v["legs"]]
        disk = tuple(map(tuple, v["legs"]))
        parts = disks_of[disk]
        if disk not in made:
            if len(legs) == 2:
                # named for the disk's first variant: the others on it share the array
                md = f"/dev/md/{spec['prefix']}-{parts[min(parts)]}"
                if not os.path.exists(md):
                    # --assume-clean: both legs are new, a resync would only burn emulated CPU
                    sh("mdadm", "--create", md, "--run", "--quiet", "--level=1", "--raid-devices=2",
                       "--metadata=1.2", "--homehost=any", "--assume-clean", *legs)
                made[disk] = wait(md)
            else:
                made[disk] = legs[0]
            if v["partition"]:
                partition(made[disk], {n: name for n, name in parts.items() if n})
        dev = made[disk]
        if v["partition"]:
            dev = wait(partition_node(dev, v["partition"]))
        if v.get("luks"):
            dev = luks(spec, v, dev)
        if v.get("vg"):
            dev = guest_lvm(spec, v, dev)
        if v["fs"] == "xfs":
            sh("mkfs.xfs", "-q", "-f", dev)
        elif v.get("thin"):
            # no discard: the thin LV stays written whole; inode tables zeroed now, not by a
            # lazy-init thread that would write through iSCSI all through the tests
            sh("mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", dev)
        else:
            sh("mkfs.ext4", "-q", "-F", dev)
        mnt = v["mount"]
        os.makedirs(mnt, exist_ok=True)
        sh("mount", dev, mnt)
        data_set(mnt, v["name"], v["files"])
        os.makedirs(os.path.dirname(v["manifest"]), exist_ok=True)
        with open(v["manifest"], "w") as f:
            f.write(manifest(mnt))
        out[v["name"]] = {"device": os.path.realpath(dev), "legs": legs}
    os.sync()   # but stay mounted: a live VM's filesystem, journal and all
    return out


def manifest_of(spec):
    return {"manifest": manifest(spec["root"])}


def change(spec):
    """What a day of use does between two dumps: grow a file, delete one, add some."""
    root = spec["root"]
    data = os.path.join(root, "data")
    with open(os.path.join(data, "dir0", "sub0", "file000.bin"), "ab") as f:
        f.write(b"appended between dumps\n" * 100)
        os.fsync(f.fileno())
    victim = os.path.join(data, "dir1", "sub1", "file001.bin")
    if os.path.exists(victim):
        os.unlink(victim)
    os.makedirs(os.path.join(data, "new"), exist_ok=True)
    for i in range(3):
        with open(os.path.join(data, "new", f"added{i}.txt"), "w") as f:
            f.write(f"added {i} " * 1000)
            os.fsync(f.fileno())
    with open(spec["manifest"], "w") as f:
        f.write(manifest(root))
    os.sync()
    return {"changed": 5}


RECORD = 58     # "%016d %s\n": sequence number, then 40 hex of sha256 over it


def record(seq):
    return f"{seq:016d} {hashlib.sha256(str(seq).encode()).hexdigest()[:40]}\n".encode()


WRITER = """
import hashlib, os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
seq = os.fstat(fd).st_size // 58     # a restarted writer continues the sequence
while True:
    os.write(fd, f"{seq:016d} {hashlib.sha256(str(seq).encode()).hexdigest()[:40]}\\n".encode())
    os.fsync(fd)
    seq += 1
    time.sleep(float(sys.argv[2]))
"""
# a VM's steady writes, one fsynced record a second each: at 10 a second, nine writers through
# md, iSCSI and LIO starved an amdump under TCG (each plugin call 30-90 s instead of 6-10 s)
INTERVAL = 1.0


def writers_start(spec):
    """A live VM's writers, one per log: sequence-numbered, checksummed records, each one
    fsynced, every INTERVAL seconds. One call for all: each call costs seconds under TCG."""
    pids = {}
    for log in spec["logs"]:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        pids[log] = subprocess.Popen(["python3", "-c", WRITER, log, str(INTERVAL)], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
    time.sleep(0.5)
    return {"pids": pids}


def writers_stop(spec):
    """Stops them; returns how many records each log holds."""
    records = {}
    for log, pid in spec["pids"].items():
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
        records[log] = os.path.getsize(log) // RECORD
    return {"records": records}


def check_log(spec):
    """A single point in time: complete records 0..n-1 in order, at most a torn last one."""
    data = open(spec["log"], "rb").read()
    n, rest = divmod(len(data), RECORD)
    for seq in range(n):
        if data[seq * RECORD:(seq + 1) * RECORD] != record(seq):
            return {"ok": False, "records": seq, "why": f"record {seq} is not the expected one"}
    torn = data[n * RECORD:]
    ok = record(n).startswith(torn) or not any(torn.strip(b"\0"))
    return {"ok": ok, "records": n, "torn_bytes": len(torn), "why": "" if ok else "garbage after the last record"}


def restored(spec):
    """What was restored, per DLE in one call (each call costs seconds under TCG): the
    manifest of its tree, and check_log of its live log (a tree with none: not ok)."""
    out = {}
    for name, tree in spec["trees"].items():
        log = f"{tree}/live/log"
        checked = check_log({"log": log}) if os.path.exists(log) else {"ok": False, "records": 0, "why": "no live log"}
        out[name] = {"manifest": manifest(tree), **checked}
    return out


def read(spec):
    """Several files' text in one call."""
    return {name: open(path).read() for name, path in spec["paths"].items()}


if __name__ == "__main__":
    action, spec = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"create": create, "manifest": manifest_of, "change": change, "writers-start": writers_start,
                      "writers-stop": writers_stop, "check-log": check_log, "restored": restored,
                      "read": read}[action](spec)))
