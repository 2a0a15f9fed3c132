"""testbed: the layered storage stack built for real, and Amanda with snaplayers run against it.

LVM -> LIO iSCSI -> md RAID1 -> GPT -> filesystems, in privileged containers."""

PREFIX = "sltb"   # every kernel object, container, network and label the testbed makes
LABEL = "io.snaplayers.testbed"
