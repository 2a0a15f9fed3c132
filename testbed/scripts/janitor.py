"""Destroys every kernel object whose name carries a prefix, then reports what is still there.

Top of the stack first. Runs in a privileged container with the engine's /dev, host network
(iscsid) and host pid namespace (every mount namespace).
Usage: python3 - clean|check '{"prefixes": [...]}'; prints JSON of leftovers."""

import glob
import json
import os
import re
import sys


# sh(): prelude.py's, which testbed.fixture.script() puts before this text; the janitor runs
# every command with check=False: it removes what it can and reports what is left


def ours(name, prefixes):
    return any(p in name for p in prefixes)


def md_labels():
    """md kernel name -> its names (MD_DEVNAME and MD_NAME), one mdadm call per array."""
    labels = {}
    for dev in glob.glob("/sys/block/md*"):
        md = os.path.basename(dev)
        out = sh("mdadm", "--detail", "--export", f"/dev/{md}", check=False)
        name = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
        labels[md] = name.get("MD_DEVNAME", "") + " " + name.get("MD_NAME", "")
    return labels


def md_arrays(prefixes):
    return [md for md, label in md_labels().items() if ours(label, prefixes)]


def dev_links(prefixes):
    """/dev/<vg> folders and /dev/mapper nodes of ours: LVM without udev makes and removes them
    itself, and a VG whose PV vanished under it leaves its folder behind."""
    found = [d for d in glob.glob("/dev/*/") if ours(os.path.basename(d.rstrip("/")), prefixes)
             and os.path.basename(d.rstrip("/")) not in ("md", "mapper")]
    found += [n for n in glob.glob("/dev/mapper/*") if ours(os.path.basename(n), prefixes)]
    # and /dev/md links: without udev nobody removes a stopped array's (seen left by a failed run)
    found += [n for n in glob.glob("/dev/md/*") if ours(os.path.basename(n), prefixes)]
    return sorted(d.rstrip("/") for d in found)


def dm_names():
    out = sh("dmsetup", "ls", check=False)
    return [ln.split()[0] for ln in out.splitlines() if ln.strip() and ln.strip() != "No devices found"]


def dm_devices(prefixes):
    return [name for name in dm_names() if ours(name, prefixes)]


def sessions(prefixes):
    out = sh("iscsiadm", "-m", "session", check=False)
    return [(m.group(1), m.group(2)) for m in re.finditer(r"\[(\d+)\] \S+ (\S+)", out)
            if ours(m.group(2), prefixes)]


def lio(prefixes):
    root = "/sys/kernel/config/target"
    found = [f"iscsi/{os.path.basename(p)}" for p in glob.glob(f"{root}/iscsi/iqn.*")
             if ours(p, prefixes)]
    found += [f"backstores/{os.path.basename(os.path.dirname(p)).split('_')[0]}/{os.path.basename(p)}"
              for p in glob.glob(f"{root}/core/*_*/*") if ours(os.path.basename(p), prefixes)]
    return found


def loops(prefixes):
    out = sh("losetup", "-a", check=False)
    return [ln.split(":")[0] for ln in out.splitlines() if ours(ln, prefixes)]


def mounts(prefixes):
    found = set()
    for info in glob.glob("/proc/[0-9]*/mountinfo"):
        try:
            text = open(info).read()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) > 9 and ours(fields[4] + " " + fields[-2], prefixes):
                found.add(f"{fields[4]} ({fields[-2]})")
    return sorted(found)


def check(prefixes):
    return {"md": md_arrays(prefixes), "dm": dm_devices(prefixes), "iscsi": [s[1] for s in sessions(prefixes)],
            "lio": lio(prefixes), "loop": loops(prefixes), "mounts": mounts(prefixes),
            "dev": dev_links(prefixes)}


def clean(prefixes):
    # an array under a dm mapping under an array...: stop and remove until nothing more goes
    for _ in range(3):
        for md in md_arrays(prefixes):
            sh("mdadm", "--stop", f"/dev/{md}", check=False)
        for name in dm_devices(prefixes):
            # no --retry: the storage hosts' LVs are busy under LIO until it goes below, and
            # each retried for seconds (a testbed's destroy took 170 s)
            sh("dmsetup", "remove", name, check=False)
    for sid, _ in sessions(prefixes):
        sh("iscsiadm", "-m", "session", "-r", sid, "-u", check=False)
    if lio(prefixes):
        import rtslib_fb    # targetcli's own library: no D-Bus needed, and no batch to lose
        for target in rtslib_fb.FabricModule("iscsi").targets:
            if ours(target.wwn, prefixes):
                target.delete()
        for so in rtslib_fb.RTSRoot().storage_objects:
            if ours(so.name, prefixes):
                so.delete()
    for _ in range(6):      # snapshots before origins: repeat until nothing more goes
        left, arrays = dm_devices(prefixes), md_arrays(prefixes)
        if not left and not arrays:
            break
        for md in arrays:   # an array whose dm user went only now, with --retry
            sh("mdadm", "--stop", f"/dev/{md}", check=False)
        for name in left:
            sh("dmsetup", "remove", "--retry", name, check=False)
    for loop in loops(prefixes):
        sh("losetup", "-d", loop, check=False)
    # without udev nobody removes stopped arrays' links, and a stale one may point at a minor
    # that another array uses now: ours are all stopped here, so every link of ours goes
    # an array's names: MD_DEVNAME, and MD_NAME without its "host:"
    live = {name.split(":")[-1] for label in md_labels().values() for name in label.split()}
    for link in glob.glob("/dev/md/*"):
        if ours(os.path.basename(link), prefixes) and os.path.basename(link) not in live:
            os.unlink(link)
    # what dm and LVM left in /dev: only links to nothing and nodes of no live mapping (a live
    # device is reported above); live names read once and compared whole, not as substrings
    mapped = set(dm_names())
    for path in dev_links(prefixes):
        entries = [os.path.join(path, e) for e in os.listdir(path)] if os.path.isdir(path) else [path]
        for entry in entries:
            if os.path.islink(entry) and not os.path.exists(entry) or (
                    path.startswith("/dev/mapper/") and os.path.basename(entry) not in mapped):
                os.unlink(entry)
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
    return check(prefixes)


if __name__ == "__main__":
    action, spec = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"clean": clean, "check": check}[action](spec["prefixes"])))
