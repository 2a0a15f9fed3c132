"""What a compromised Amanda user would ask root to run: every argv here must be refused, by
sudo directly and by the helper. Written from the classes of attack (extra arguments, other
devices, LVM's own names, mount options, symlinks, --config) and what else we found; plus each
of the plugin's own forms with one argument made hostile.

{vg} is a VG of the storage host, {dmvg} its device-mapper form, {base} the mount base, {id} a
DLE id. Tools are bare names, as the plugin hands them to the helper.
"""

ID = "0123456789ab"
MD = f"/dev/md/snaplayers-{ID}"
MAP = f"/dev/mapper/snaplayers-{ID}-2p1"
SNAP = "/dev/mapper/{dmvg}-vol00.amsnap"
UUID = "--uuid=01234567:89abcdef:01234567:89abcdef"


from snaplayers.helper import lvm_config as lvmconf   # the form the plugin passes, exactly


HAND = [
    # not a command snaplayers runs at all
    ["sh", "-c", "id"], ["bash", "-p"], ["python3", "-c", "import os; os.setuid(0)"],
    ["tee", "/etc/sudoers.d/x"], ["cp", "/bin/sh", "/tmp/sh"], ["chmod", "u+s", "/tmp/sh"],
    ["visudo", "-f", "/etc/sudoers"], ["sudoedit", "/etc/shadow"], ["dd", "if=/dev/zero", "of=/dev/sda"],
    ["/usr/sbin/lvs", "--noheadings"], ["../../bin/sh"], ["lvm", "lvremove", "--yes", "{vg}/vol00"],
    ["dmsetup"], ["mount"], ["umount"], [""], ["-c", "id"], ["--check"],
    # lvm: another LV, extra arguments, options LVM runs programs with
    ["lvremove", "--yes", "{vg}/vol00"],
    ["lvremove", "--yes", "{vg}/vol00", "{vg}/vol00.amsnap"],
    ["lvremove", "--yes", "{vg}/vol00.amsnap", "--force"],
    ["lvremove", "-f", "{vg}/vol00.amsnap"],
    ["lvremove", "--yes", "{vg}/vol00.amsnap {vg}/vol00"],
    ["lvremove", "--yes", "{vg}"],
    ["lvremove", "--yes", "{vg}/*.amsnap"],
    ["lvremove", "--yes", "--config", 'global/thin_check_executable="/tmp/x"', "{vg}/v.amsnap"],
    ["lvcreate", "--snapshot", "--name", "vol00", "--size", "1G", "{vg}/vol00"],
    ["lvcreate", "--name", "x.amsnap", "--size", "1G", "{vg}"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "{vg}/vol00", "--yes"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G --yes", "{vg}/vol00"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "-1G", "{vg}/vol00"],
    ["lvcreate", "--snapshot", "--name", "x_tdata.amsnap", "--size", "1G", "{vg}/vol00", "-Zy"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--extents", "100%FREE", "{vg}/vol00"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--setactivationskip", "y", "{vg}/vol00"],
    ["lvcreate", "--config", 'global/thin_check_executable="/var/lib/amanda/x"', "--snapshot",
     "--name", "x.amsnap", "--size", "1G", "{vg}/vol00"],
    ["lvs", "--config", 'global/thin_check_executable="/var/lib/amanda/x"', "{vg}/vol00"],
    ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o", "lv_name", "{vg}/vol00"],
    ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
     "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size", "{vg}/vol00", "--config", "x"],
    ["lvchange", "--activate", "y", "{vg}/vol00"],
    ["lvchange", "--config", 'global/thin_check_executable="/var/lib/amanda/x"', "--activate", "y",
     "snaplayers_" + ID + "/root"],
    ["lvchange", "--config", lvmconf("/dev/mapper/{dmvg}-vol00"), "--activate", "y",
     "snaplayers_" + ID + "/root"],                       # the live origin, not a snapshot
    ["lvchange", "--config", lvmconf(SNAP) + " global/thin_check_executable=\"/tmp/x\"",
     "--activate", "y", "snaplayers_" + ID + "/root"],
    ["lvchange", "--config", lvmconf(SNAP), "--activate", "y", "{vg}/vol00"],
    ["lvchange", "--config", lvmconf(SNAP), "--activate", "y", "snaplayers_" + ID + "/root", "--yes"],
    ["vgchange", "--activate", "n", "{vg}"],
    ["vgchange", "--config", 'devices/filter=["a|.*|"]', "--activate", "n", "snaplayers_" + ID],
    ["vgchange", "--config", lvmconf(SNAP), "--activate", "y", "snaplayers_" + ID],
    ["vgchange", "--config", lvmconf(SNAP), "--activate", "n", "{vg}"],
    ["vgchange", "--config", lvmconf("/dev/sda"), "--activate", "n", "snaplayers_" + ID],
    ["vgimportclone", "--basevgname", "snaplayers_" + ID, "/dev/sda"],
    ["vgimportclone", "--config", lvmconf("/dev/sda"), "--basevgname", "snaplayers_" + ID, "/dev/sda"],
    ["vgimportclone", "--config", lvmconf(MD), "--basevgname", "{vg}", MD],
    ["vgimportclone", "--config", lvmconf(MD), "--basevgname", "snaplayers_" + ID, MD, "/dev/sda"],
    ["vgimportclone", "--config", lvmconf(MD).replace("r|.*|", "a|.*|"), "--basevgname",
     "snaplayers_" + ID, MD],
    ["pvs", "--config", lvmconf(MD), "--noheadings", "--nameprefixes", "-o",
     "pv_name,vg_name,vg_uuid,pv_count", "/dev/sda"],
    ["pvs", "--config", lvmconf("/dev/sda"), "--noheadings", "--nameprefixes", "-o",
     "pv_name,vg_name,vg_uuid,pv_count", "/dev/sda"],
    ["lvs", "--config", lvmconf(MD), "--noheadings", "--nameprefixes", "-o",
     "lv_name,lv_attr,vg_uuid", "{vg}"],
    # LVM's own devices: an origin's -real, a snapshot's -cow, thin pool data, raid images
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/{dmvg}-vol00-real"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/{dmvg}-vol00.amsnap-cow"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/{dmvg}-pool_tdata"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/{dmvg}-pool-tpool"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/{dmvg}-r_rimage_0"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/{dmvg}-vol00"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/sda"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/sdb1"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/shm/x.amsnap"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/../sda.amsnap"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/mapper/x-y.amsnap/../../sda"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, "/dev/sda", SNAP],
    ["mdadm", "--assemble", MD, "--run", "--update=resync", UUID, SNAP],
    ["mdadm", "--assemble", "/dev/md127", "--run", "--update=uuid", UUID, SNAP],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", "--uuid=x", SNAP],
    ["mdadm", "--assemble", MD, "--scan"],
    ["mdadm", "--stop", "/dev/md127"], ["mdadm", "--stop", "/dev/md/guest0:0"],
    ["mdadm", "--stop", MD, "/dev/md127"], ["mdadm", "--stop", "--scan"],
    ["mdadm", "--zero-superblock", SNAP], ["mdadm", "--examine", "--export", "/dev/shm/x"],
    ["mdadm", "--examine", "--export", "/dev/sda"], ["mdadm", "--detail", "--export", "/dev/md127"],
    ["mdadm", "--grow", MD, "--raid-devices=1", "--force"],
    ["mdadm", "--manage", MD, "--add", "/dev/sda"],
    ["mdadm", "--create", MD, "--level=1", "--raid-devices=2", "/dev/sda", "missing"],
    ["rm", "-f", "--", "/dev/md127"], ["rm", "-rf", "/"], ["rm", "-f", "--", MD, "/etc/shadow"],
    ["rm", "-f", "--", "/dev/md/snaplayers-" + ID + "/../../sda"], ["rm", "-f", "/dev/md/x"],
    ["rm", "-f", "--", MD + " /etc/passwd"],
    # device-mapper: other mappings, other tables
    ["dmsetup", "remove", "{dmvg}-vol00"], ["dmsetup", "remove_all"], ["dmsetup", "remove", "--force", MAP[12:]],
    ["dmsetup", "remove", "--retry", "{dmvg}-vol00"],
    ["dmsetup", "create", MAP[12:], "--table", "0 10 linear /dev/sda 0"],
    ["dmsetup", "create", MAP[12:], "--table", "0 10 linear /dev/mapper/{dmvg}-vol00 0"],
    ["dmsetup", "create", MAP[12:], "--table", "0 10 zero"],
    ["dmsetup", "create", MAP[12:], "--table", "0 10 linear " + SNAP + " 0\n10 10 linear /dev/sda 0"],
    ["dmsetup", "create", MAP[12:], "--table", "0 10 linear " + SNAP + " 0", "--readonly", "x"],
    ["dmsetup", "create", "root", "--table", "0 10 linear " + SNAP + " 0"],
    ["dmsetup", "table", "--showkeys", "luks-root"], ["dmsetup", "table", "luks-root"],
    ["dmsetup", "table", "--showkeys", MAP[12:]], ["dmsetup", "message", MAP[12:], "0", "x"],
    ["dmsetup", "suspend", "{dmvg}-vol00"], ["dmsetup", "reload", MAP[12:], "--table", "0 1 zero"],
    ["dmsetup", "mknodes"], ["dmsetup", "mknodes", "{dmvg}-vol00"],
    ["partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", "--nr", "1", "/dev/sda"],
    ["partx", "--add", SNAP], ["partx", "-d", "/dev/sda"],
    ["blockdev", "--setrw", SNAP], ["blockdev", "--getsz", "/dev/sda"], ["blockdev", "--flushbufs", "/dev/sda"],
    ["blkid", "--probe", "--output", "export", "/etc/shadow"],
    ["blkid", "--probe", "--output", "export", "/dev/sda"],
    ["blkid", "-c", "/etc/shadow"],
    # LUKS: other keys, other devices, other mappings, header operations
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/shadow", MAP, f"snaplayers-{ID}-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/../../shadow.key",
     MAP, f"snaplayers-{ID}-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/.hidden.key",
     MAP, f"snaplayers-{ID}-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key", "/dev/sda1",
     f"snaplayers-{ID}-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key", MAP, "root"],
    ["cryptsetup", "open", "--type", "plain", "--key-file", "/etc/snaplayers/keys/k.key", MAP,
     f"snaplayers-{ID}-3c"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key", MAP,
     f"snaplayers-{ID}-3c", "--allow-discards"],
    ["cryptsetup", "close", "luks-root"], ["cryptsetup", "status", "luks-root"],
    ["cryptsetup", "luksDump", "--dump-master-key", MAP], ["cryptsetup", "luksErase", MAP],
    ["cryptsetup", "luksAddKey", MAP, "/tmp/k"], ["cryptsetup", "isLuks", "/dev/sda"],
    # mount: other sources, other targets, options that keep setuid or write, bind, remount
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", "/dev/sda1", "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", "/dev/mapper/{dmvg}-vol00", "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nouuid", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "rw,nosuid,nodev,noexec", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec,suid", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec,exec", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec,dev", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec,remount,rw", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "/etc"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "/etc/cron.hourly"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/.."],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/lvm=a/../../etc"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/lvm=a+b/x"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/x"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/lvm=a+b", "/x"],
    ["mount", "-t", "btrfs", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "btrfs", "-o", "ro", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "tmpfs", "-o", "ro,nosuid,nodev,noexec", "tmpfs", "{base}/lvm=a+b"],
    ["mount", "-t", "proc", "-o", "ro,nosuid,nodev,noexec", "proc", "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", "/dev/md127p1", "{base}/lvm=a+b"],
    ["mount", "--bind", "/", "{base}/lvm=a+b"], ["mount", "--bind", "/etc", "/tmp"],
    ["mount", "-o", "remount,rw", "/"], ["mount", "--make-shared", "/"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", "-o", "rw", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP, "{base}/lvm=a+b\n/etc"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", SNAP + " /etc", "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec", "--", SNAP, "{base}/lvm=a+b"],
    ["umount", "/"], ["umount", "{base}"], ["umount", "{base}/lvm=a+b", "/home"],
    ["umount", "-l", "{base}/lvm=a+b"], ["umount", "-R", "/"], ["umount", "{base}/lvm=a+b/../.."],
    ["umount", "-a"], ["umount", "/boot"], ["umount", "{base}/lvm=a+b /boot"],
    ["mkdir", "/etc/x"], ["mkdir", "-p", "{base}/lvm=a+b"], ["mkdir", "{base}/lvm=a+b", "/etc/y"],
    ["mkdir", "{base}/../lvm=a+b"], ["mkdir", "-m", "4777", "{base}/lvm=a+b"],
    ["rmdir", "/etc"], ["rmdir", "{base}"], ["rmdir", "{base}/lvm=a+b/.."], ["rmdir", "-p", "{base}/lvm=a+b"],
    # from a fresh-eyed review: LVM's internal LVs as origins, '.' and '..', sizes that fill a VG
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "{vg}/pool_tdata"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "{vg}/pool_tmeta"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "{vg}/r_rimage_0"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "{vg}/lvol0_pmspare"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "1G", "{vg}/snapshot0"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--size", "0", "{vg}/vol00"],
    ["lvcreate", "--snapshot", "--name", "x.amsnap", "--extents", "999%ORIGIN", "{vg}/vol00"],
    ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
     "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size", "../.."],
    ["lvremove", "--yes", "../..amsnap"],
    # whitespace, unicode and case around a name; one layer's names in another's place
    ["lvremove", "--yes", "{vg}/vol00.amsnap\n"], ["lvremove", "--yes", "{vg}/vol00.amsnap "],
    ["lvremove", "--yes", "{vg}/vol00.AMSNAP"], ["lvremove", "--yes", "{vg}/vol00\u2024amsnap"],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID.replace("7", "\uff17", 1), SNAP],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID + "\n", SNAP],
    ["dmsetup", "table", "snaplayers-{id}-3c"],
    ["dmsetup", "create", "snaplayers-{id}-3c", "--table", "0 8 linear " + SNAP + " 0"],
    ["dmsetup", "remove", "--retry", "snaplayers-{id}-3c"], ["cryptsetup", "close", MAP[12:]],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key", MAP,
     "snaplayers-{id}-3c", "--token-only"],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "-", MAP, "snaplayers-{id}-3c"],
    ["blockdev", "--getsz", MD + "p1"], ["blockdev", "--getsz", "/dev/mapper/snaplayers_{id}-root-real"],
    ["blockdev", "--getsz", MD],          # mdadm's link is for mdadm alone: layers get /dev/mdN
    # ext4 and xfs options that name another device for the journal or log
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec,journal_path=/dev/sda", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "ext4", "-o", "ro,nosuid,nodev,noexec,journal_dev=2049", SNAP, "{base}/lvm=a+b"],
    ["mount", "-t", "xfs", "-o", "ro,nosuid,nodev,noexec,nouuid,logdev=/dev/sda", SNAP, "{base}/lvm=a+b"],
    ["umount", "--lazy", "{base}/lvm=a+b"], ["mkdir", "{base}/lvm=a+b\n"],
    # a group's snapshot-set: another suffix (LVM's own names), one origin, LVM's own LVs,
    # sizes that fill the VG, extra arguments, more than 8 origins (an origin given twice, a
    # snapshot or pool as an origin: the helper's own check, on the disk; test_group)
    ["snapshot-set", "--suffix", "_tdata", "--size", "20%ORIGIN", "{vg}/vol00", "{vg}/vol01"],
    ["snapshot-set", "--suffix", "", "--size", "20%ORIGIN", "{vg}/vol00", "{vg}/vol01"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", "{vg}/vol00"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", "{vg}/vol00", "{vg}/tbpool_tdata"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "100%FREE", "{vg}/vol00", "{vg}/vol01"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", "{vg}/vol00", "{vg}/vol01", "--force"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", "{vg}/vol00", "{vg}/vol01 {vg}/vol02"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", *[f"{{vg}}/v{i}" for i in range(9)]],
]


def mutations(forms):
    """Each of the plugin's own argv (bare tool first) with an argument added, or one argument
    swapped for something an attacker would rather have there."""
    hostile = ("/dev/sda", "/etc", "--force", "x y", "../..")
    out = []
    for argv in forms:
        out.append(argv + ["/dev/sda"])
        out.append(argv[:1] + ["--force"] + argv[1:])
        i = len(argv) - 1
        out.append(argv[:i] + [hostile[len(out) % len(hostile)]])
    return out


# The plugin's own forms, one of each kind, in the fixture's names (made hostile above).
OWN = [
    ["lvs", "--noheadings", "--nameprefixes", "--units", "b", "-o",
     "lv_name,lv_attr,origin,segtype,data_percent,pool_lv,lv_size,vg_free,vg_extent_size", "{vg}/vol00"],
    ["lvcreate", "--snapshot", "--name", "vol00.amsnap", "--extents", "20%ORIGIN", "{vg}/vol00"],
    ["lvremove", "--yes", "{vg}/vol00.amsnap"],
    ["mdadm", "--examine", "--export", SNAP],
    ["mdadm", "--assemble", MD, "--run", "--update=uuid", UUID, SNAP],
    ["mdadm", "--detail", "--export", MD], ["mdadm", "--stop", MD], ["rm", "-f", "--", MD],
    ["partx", "--raw", "--noheadings", "--output", "NR,START,SECTORS", "--nr", "1", "/dev/md9999"],
    ["blockdev", "--getsz", "/dev/md9999"],
    ["dmsetup", "create", MAP[12:], "--table", "0 2048 linear /dev/md9999 2048"],
    ["dmsetup", "remove", "--retry", MAP[12:]], ["dmsetup", "table", MAP[12:]],
    ["blkid", "--probe", "--output", "export", MAP],
    ["cryptsetup", "open", "--type", "luks", "--key-file", "/etc/snaplayers/keys/k.key", MAP,
     f"snaplayers-{ID}-3c"],
    ["vgimportclone", "--config", lvmconf(MAP), "--basevgname", "snaplayers_" + ID, MAP],
    ["lvchange", "--config", lvmconf(MAP), "--activate", "y", "snaplayers_" + ID + "/root"],
    ["snapshot-set", "--suffix", ".amsnap", "--size", "20%ORIGIN", "{vg}/vol07", "{vg}/vol08"],  # group tbvm
]


def argvs(vg="data0", base="/v/amsnap"):
    """Every red-team argv in the names of a host with VG `vg` and mount base `base`."""
    names = {"vg": vg, "dmvg": vg.replace("-", "--"), "base": base, "id": ID}
    fill = [[a.format(**names) for a in argv] for argv in HAND]
    own = [[a.format(**names) for a in argv] for argv in OWN]
    return fill + mutations(own)


def own(vg="data0", base="/v/amsnap"):
    names = {"vg": vg, "dmvg": vg.replace("-", "--"), "base": base, "id": ID}
    return [[a.format(**names) for a in argv] for argv in OWN]
