"""A real Amanda server and client around the testbed: amcheck, amdump while the guest writes,
byte-exact restores with amfetchdump and amrecover, incrementals, parallel DLEs."""

import re

import pytest

from testbed.amanda import BROKEN, CLIENT, NO_ROOM, ok_dumps
from testbed.fixture.topology import WRONG_KEY
from testbed.amanda.backup import dump_while_writing, group_skew, table, verify

from figures import record

pytestmark = pytest.mark.e2e


def test_amcheck_passes_with_the_whole_stack_set_up(amanda):
    code, out = amanda.amcheck()
    assert code == 0, out
    assert "0 problems found" in out


def test_amcheck_reports_each_broken_dle_clearly_and_fails(amanda):
    code, out = amanda.amcheck(BROKEN)
    assert code != 0
    vg = amanda.topo.vg(CLIENT)
    guest_vg = next(v.guest_vg[0] for v in amanda.topo.variants if v.guest_vg)
    errors = [ln for ln in out.splitlines() if "ERROR" in ln and "snaplayers:" in ln]
    expected = [f"logical volume {vg}/nosuch does not exist",
                # found only inside the snapshot: a key that does not open it, a guest LV
                f"luks={WRONG_KEY}: key file /etc/snaplayers/keys/{WRONG_KEY}.key does not open",
                f"vg={guest_vg}+nosuch: volume group {guest_vg} in the snapshot has no LV nosuch "
                "(it has: root)",
                # found before anything is made: no room in the VG for the snapshot's size
                f": volume group {vg} has ",
                f"at size {NO_ROOM} needs 65536.0 MiB: free space in the VG or lower the size property"]
    for message in expected:
        assert any(message in ln for ln in errors), f"{message!r} not in:\n{out}"
    # the good DLE beside them was set up and torn down without complaint: every script
    # error is about a broken DLE (its message, or Amanda's pointer to that call's debug log)
    others = [ln for ln in out.splitlines() if "Script" in ln and "nosuch" not in ln
              and WRONG_KEY not in ln and "exited with status" not in ln and f"size {NO_ROOM}" not in ln]
    assert not others, out


def test_a_wrong_key_fails_the_dump_with_the_reason(amanda):
    amanda.as_backup("amdump", BROKEN, amanda.client_host, "wrong-key")
    report = amanda.report(BROKEN)
    assert "wrong-key" in report and "FAILED" in report, report
    assert "does not open" in report and "wrong key" in report, report
    assert "wrong-key" not in ok_dumps(amanda.dumps(BROKEN)), report


def test_level0_dump_restores_byte_exact_while_the_guest_writes_in_parallel(amanda):
    before = plugin_logs(amanda)
    dump_while_writing(amanda)
    dumps = ok_dumps(amanda.dumps())
    assert sorted(dumps) == sorted(v.name for v in amanda.topo.variants), amanda.report()
    report = amanda.report()
    assert "FAILED" not in report and "STRANGE" not in report, report
    # inparallel/maxdumps 4: this run's stacks for different DLEs were up at the same time
    logs = sorted(plugin_logs(amanda) - before)
    assert_parallel(amanda, logs)
    results = verify(amanda)
    assert all(r.ok for r in results), table(results) + "\n" + amanda.client_log("")
    assert_one_instant(amanda, logs, results)


def assert_one_instant(amanda, logs, results):
    """The VM's two disks (one group): the estimates and the dumps each read one set of
    snapshots, made by one snapshot-set, and the disks' restored logs, written record by
    record to both while Amanda dumped, differ by at most the record in flight."""
    [(group, members)] = amanda.topo.groups.items()
    skew = group_skew(results, amanda.topo)[group]
    record(f"group {group}: records its disks' restores differ by", skew)
    assert skew <= 1, table(results)
    lvs = [amanda.topo.variant(n).legs[0].lv for n in members]
    out = amanda.tb.exec(CLIENT, ["sh", "-c", "grep -h -E 'snapshot-set|^.*lvcreate ' "
                                              + " ".join(logs) + "; true"])
    sets = [ln for ln in out.splitlines() if " snapshot-set " in ln and all(f"/{lv}" in ln for lv in lvs)]
    assert len(sets) == 2, f"one set for the estimates, one for the dumps:\n{out}"
    assert not [ln for ln in out.splitlines() if re.search(rf"lvcreate .*/({'|'.join(lvs)})$", ln)], out
    held = [float(h) for h in re.findall(r"snapshot-set of \d+ origins: their I/O held ([0-9.]+) s", out)]
    assert len(held) == 2 and max(held) < 15, out
    record(f"group {group}: its disks' I/O held for the set, s (most)", max(held))


def plugin_logs(amanda):
    return set(amanda.tb.exec(CLIENT, ["sh", "-c", "ls /var/log/amanda/snaplayers/*.debug 2>/dev/null; true"]).split())


def assert_parallel(amanda, logs):
    assert logs, "the run wrote no plugin log"
    out = amanda.tb.exec(CLIENT, ["sh", "-c", "grep -h -E 'PRE-DLE-BACKUP|POST-DLE-BACKUP' "
                                              + " ".join(logs) + " | sort"])
    up = 0
    peak = 0
    for line in out.splitlines():
        m = re.search(r"(PRE|POST)-DLE-BACKUP disk=(\S+)", line)
        if m:
            up += 1 if m.group(1) == "PRE" else -1
            peak = max(peak, up)
    assert peak >= 3, f"at most {peak} DLE stacks were up at once:\n{out}"
    # whether two DLEs of one VM disk overlapped is Amanda's scheduling: counted, not asserted
    # (tests/integration/test_faults.py sets them up at once)
    shared = amanda.tb.exec(CLIENT, ["sh", "-c", "cat " + " ".join(logs)
                                                 + " | grep -c ' share lvm='; true"]).strip()
    record("DLEs that shared a snapshot in an amdump", int(shared or 0))


def test_amrecover_restores_the_level0_byte_exact(amanda):
    """Before the level 1: amrecover driven through its prompt with one volume to load."""
    results = verify(amanda, how="amrecover", only=["md-part-ext4"])
    assert len(results) == 1 and results[0].ok, table(results)


# the level 1 run's DLEs: md+GPT, md+xfs, a guest VG, LUKS, thin, and the one GNUTAR dumptype
# (lv-ext4); leaving out the bare partitions and the second DLE of a shared VM disk saves a
# third of that amdump's script calls under TCG (their level 0 is restored all the same)
LEVEL1 = ["md-part-ext4", "md-xfs", "md-part-vg-ext4", "md-part-luks-ext4", "thin-ext4", "lv-ext4"]


def test_level1_after_changes_restores_from_level0_plus_level1(amanda):
    tb = amanda.tb
    names = [v.name for v in tb.topo.variants if v.name in LEVEL1]
    assert len(names) == len(LEVEL1), names
    for name in names:
        tb.python("guest0", "guest.py", "change", {"root": tb.mountpoint(name), "manifest": tb.manifest_path(name)})
    dump_while_writing(amanda, only=names)
    levels = ok_dumps(amanda.dumps())
    report = amanda.report()
    # Amanda's planner may move a full dump forward to balance the cycle (seen in the trixie
    # 6.12 cell: "Full dump of ...:md-part-luks-ext4 promoted from 7 days ahead"): not a level 1
    promoted = set(re.findall(r"Full dump of \S+?:(\S+) promoted", report))
    amgtar = [n for n in names if n != "lv-ext4" and n not in promoted]
    assert len(amgtar) >= 3, f"too few DLEs left at level 1 to show anything: promoted {promoted}"
    for name in amgtar:
        assert 1 in levels[name], f"{name} was not dumped at level 1: {levels}"
    sizes = level_sizes(report)
    for name in amgtar:     # CHECK-DEVICE NO: a new snapshot device does not resend everything
        assert sizes[(name, 1)] < sizes.get((name, 0), 10 ** 9) / 2, sizes
    # every DLE: those of this run from level 0 and 1, the others as the level 0 left them
    results = verify(amanda)
    assert all(r.ok for r in results), table(results)


def level_sizes(report):
    sizes = {}
    for m in re.finditer(r"^\S+\s+(\S+)\s+(\d)\s+(\d+)\s+\d+", report, re.M):
        sizes[(m.group(1), int(m.group(2)))] = int(m.group(3))
    return sizes
