"""testbed: builds the layered storage stack for real (LVM -> LIO iSCSI -> md RAID1 -> GPT ->
filesystems) in privileged containers, and runs Amanda with snaplayers against it."""

PREFIX = "sltb"   # every kernel object, container, network and label the testbed makes
LABEL = "io.snaplayers.testbed"
