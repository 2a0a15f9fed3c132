#!/bin/bash
# Creates and removes, for real, each kernel object the testbed relies on; then checks that
# nothing named with the prefix is left. Runs in a privileged node container (-v /dev:/dev,
# --network host) next to the engine's iscsid. Usage: probe-stack.sh PREFIX
set -euo pipefail
P=$1
IQN=iqn.2026-11.io.snaplayers:$P
dir=/var/tmp/$P
say() { echo "probe: $*"; }
mkdir -p "$dir"
truncate -s 64M "$dir/a.img" "$dir/b.img" "$dir/c.img" "$dir/d.img"
A=$(losetup --find --show "$dir/a.img"); B=$(losetup --find --show "$dir/b.img")
C=$(losetup --find --show "$dir/c.img"); D=$(losetup --find --show "$dir/d.img")
say "loop devices $A $B $C $D"
size=$(blockdev --getsz "$A")
dmsetup create "$P-linear" --table "0 $size linear $A 0"
say "dm linear /dev/mapper/$P-linear"
dmsetup create "$P-snap" --table "0 $size snapshot /dev/mapper/$P-linear $C N 8"
echo hello | dd of="/dev/mapper/$P-snap" bs=512 count=1 conv=sync status=none
say "dm snapshot /dev/mapper/$P-snap: $(dmsetup status "$P-snap")"
mdadm --create "/dev/md/$P" --run --quiet --level=1 --raid-devices=2 --metadata=1.2 --homehost=any "$B" "$D"
md=$(basename "$(readlink -f "/dev/md/$P")")
say "md raid1 $md: $(cat /sys/block/$md/md/array_state)"
# LIO through rtslib-fb, targetcli's library (no D-Bus): what the storage hosts do
truncate -s 32M "$dir/lio.img"     # as targetcli made it: a sparse file of the LUN's size
python3 - "$P-fio" "$dir/lio.img" "$IQN" <<'PY'
import sys
from rtslib_fb import LUN, TPG, FabricModule, FileIOStorageObject, NetworkPortal, RTSLibError, Target
name, path, iqn = sys.argv[1:]
so = FileIOStorageObject(name, path, size=32 * 2**20)
tpg = TPG(Target(FabricModule("iscsi"), iqn, mode="create"), 1, mode="create")
try:
    NetworkPortal(tpg, "0.0.0.0", 3260, mode="create")
except RTSLibError:
    pass        # the engine's anchor owns it
LUN(tpg, 0, so)
for key, value in (("authentication", "0"), ("generate_node_acls", "1"), ("demo_mode_write_protect", "0")):
    tpg.set_attribute(key, value)
tpg.enable = True
PY
say "LIO fileio backstore $P-fio exported as $IQN"
iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 >/dev/null
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --login >/dev/null
for i in $(seq 50); do
  disk=$(iscsiadm -m session -P 3 2>/dev/null | awk -v t="$IQN" '$1=="Target:"{on=($2==t)} on && /Attached scsi disk/{print $4}')
  [ -n "$disk" ] && [ -b "/dev/$disk" ] && break; sleep 0.2
done
say "iSCSI login: /dev/$disk ($(blockdev --getsize64 /dev/$disk) bytes)"
# tear everything down again, top first
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --logout >/dev/null
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 -o delete
python3 - "$P-fio" "$IQN" <<'PY'
import sys
from rtslib_fb import FabricModule, FileIOStorageObject, Target
Target(FabricModule("iscsi"), sys.argv[2], mode="lookup").delete()
FileIOStorageObject(sys.argv[1]).delete()
PY
mdadm --stop "/dev/md/$P" --quiet
dmsetup remove "$P-snap"; dmsetup remove "$P-linear"
for l in $A $B $C $D; do losetup -d "$l"; done
rm -rf "$dir"
left=""
dmsetup ls | grep -q "$P" && left="$left dm"
grep -q "$md" /proc/mdstat && left="$left md"
losetup -a | grep -q "$dir" && left="$left loop"
iscsiadm -m session 2>/dev/null | grep -q "$IQN" && left="$left iscsi-session"
ls /sys/kernel/config/target/iscsi | grep -q "$P" && left="$left lio-target"
ls /sys/kernel/config/target/core/fileio_*/ 2>/dev/null | grep -q "$P" && left="$left lio-backstore"
[ -z "$left" ] || { say "LEFT BEHIND:$left"; exit 1; }
say "nothing left"
