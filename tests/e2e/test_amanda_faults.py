"""Faults through the real Amanda: amdump killed after PRE-DLE-BACKUP, a snapshot
that overflows while Amanda dumps (and amcheck runs), the guest's iSCSI session dropped and restored, the storage
host's container restarted in the middle of a dump. Every fault happens while the dump is held
right after snaplayers' PRE-DLE-BACKUP (testbed/amanda/script-testbed-hold), so it lands at
the same point every run. Amanda must report a failed dump, never an OK one made from a bad
snapshot, and the next run must work and restore byte for byte."""

import threading
import time

import pytest
from figures import record
from leftovers import nothing_left

from testbed.amanda import CLIENT, FAULTS, HOLD_DIR, SERVER

pytestmark = pytest.mark.e2e

FAULT, OVERFLOW = "TBFAULT", "TBOVERFLOW"


class HeldDump:
    """amdump of a fault config in the background, held after PRE-DLE-BACKUP until go()."""

    def __init__(self, amanda, config):
        self.am, self.tb, self.config = amanda, amanda.tb, config
        self.disk = FAULTS[config][0]
        self.result = None
        self.tb.exec(CLIENT, ["rm", "-f", f"{HOLD_DIR}/{self.disk}.held", f"{HOLD_DIR}/{self.disk}.go"])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 600
        while not self.tb.until(CLIENT, f"test -e {HOLD_DIR}/{self.disk}.held", 20, 0.5):
            assert self.thread.is_alive(), f"amdump {config} ended before its dump was held: {self.result}"
            assert time.monotonic() < deadline, f"amdump {config} never reached PRE-DLE-BACKUP"

    def _run(self):
        self.result = self.am.amdump(self.config)

    def go(self):
        self.tb.exec(CLIENT, ["touch", f"{HOLD_DIR}/{self.disk}.go"])

    def join(self):
        self.thread.join(1800)
        return self.result


def kill_amanda(amanda, config):
    """The server side first (no retry is scheduled), then the client's sendbackup and the
    held script: POST-DLE-BACKUP never runs."""
    amanda.as_backup("amcleanup", "-k", config)
    amanda.tb.exec(CLIENT, ["sh", "-c", "pkill -9 -x sendbackup; "
                                        f"pkill -9 -f '^/bin/sh {amanda.layout.application_dir}/script-testbed-'; true"])


def status(amanda):
    return amanda.tb.exec(CLIENT, ["snaplayers", "status"], user=amanda.layout.user)


def full_dump(amanda, config):
    """amdump with nothing held and a level 0 forced (as an admin does after a failure);
    returns the new OK dump's date."""
    tb = amanda.tb
    disk = FAULTS[config][0]
    tb.exec(CLIENT, ["sh", "-c", f"touch {HOLD_DIR}/{disk}.go"])
    amanda.as_backup("amadmin", config, "force", amanda.client_host, disk)
    before = {d.date for d in amanda.dumps(config)}
    code, _ = amanda.amdump(config)
    new = [d for d in amanda.dumps(config) if d.date not in before and d.status.split()[-1:] == ["OK"]]
    assert code == 0 and len(new) == 1 and new[0].level == 0, amanda.report(config)
    return new[0].date


def restored_exact(amanda, config, date, expected):
    """amfetchdump of that run's dump (or of each run's in a list, extracted level by level)
    against the guest's manifest, byte for byte."""
    disk = FAULTS[config][0]
    dest = f"/srv/restore/{config}/{disk}"
    amanda.fetch(disk, dest, config=config, date=date)
    seen = amanda.manifest(f"{dest}/tree")
    record("bytes compared", int(amanda.tb.exec(SERVER, ["du", "-sb", "--exclude=live", f"{dest}/tree"]).split()[0]))
    if seen != expected:
        record("bytes lost", 1)
    return seen == expected


def test_amdump_killed_after_pre_dle_backup_is_cleaned_up_by_the_next_run(amanda):
    tb = amanda.tb
    disk = FAULTS[FAULT][0]
    held = HeldDump(amanda, FAULT)
    kill_amanda(amanda, FAULT)
    held.join()
    # the stack is still up, and the plugin knows whose it was: sendbackup, now gone
    shown = status(amanda)
    assert f"{FAULT} {amanda.client_host} {disk}: up" in shown and "is gone: a leftover" in shown, shown
    # the next run recovers it at once (not after stale-seconds) and dumps
    date = full_dump(amanda, FAULT)
    assert restored_exact(amanda, FAULT, date, tb.manifest(disk))
    nothing_left(tb, CLIENT, status_user=amanda.layout.user)
    record("scenarios survived")


def test_a_snapshot_overflowing_during_the_dump_is_a_failed_dump(amanda):
    tb = amanda.tb
    disk = FAULTS[OVERFLOW][0]
    big = f"{tb.mountpoint(disk)}/big"
    before = {d.date for d in amanda.dumps(OVERFLOW)}
    held = HeldDump(amanda, OVERFLOW)
    try:
        # amcheck meanwhile: its PRE is refused as busy, and its POST (Amanda runs it anyway)
        # leaves amdump's stack, and so the overflow check below, to amdump's own POST
        code, out = amanda.amcheck(OVERFLOW)
        assert code != 0 and f"DLE {disk} was set up" in out and "still runs" in out, out
        shown = status(amanda)
        assert f"{OVERFLOW} {amanda.client_host} {disk}: up" in shown and "runs" in shown, shown
        # while Amanda is about to read the snapshot, the guest writes 3x its 8 MiB of room
        tb.exec("guest0", ["sh", "-c", f"dd if=/dev/urandom of={big} bs=1M count=24 conv=fsync status=none"])
        held.go()
        code, _ = held.join()
        report = amanda.report(OVERFLOW)
        # that attempt is FAILED, with the plugin's reason in Amanda's own report (a dump that
        # went straight to the one tape cannot be retried: Amanda then adds a second FAILED
        # line, "out of holding space in degraded mode", seen on trixie)
        failed = [ln for ln in report.splitlines() if f"{disk} lev 0" in ln and "FAILED" in ln]
        assert [ln for ln in failed if "overflowed" in ln and "POST-DLE-BACKUP" in ln], report
        # if Amanda retried with a new snapshot, the only OK dump is that retry, and it is a
        # true copy of the guest as it is now (the big file included)
        new = [d for d in amanda.dumps(OVERFLOW) if d.date not in before]
        oks = [d for d in new if d.status.split()[-1:] == ["OK"]]
        assert any("overflowed" in d.status for d in new if d not in oks), new
        assert len(oks) <= 1, new
        if oks:
            now = tb.python("guest0", "guest.py", "manifest", {"root": tb.mountpoint(disk)})["manifest"]
            assert restored_exact(amanda, OVERFLOW, oks[0].date, now)
        nothing_left(tb, CLIENT, status_user=amanda.layout.user)
    finally:
        tb.exec("guest0", ["rm", "-f", big])
    record("scenarios survived")


def test_an_iscsi_session_dropped_and_restored_between_backups(amanda):
    tb = amanda.tb
    disk = FAULTS[FAULT][0]
    iqn = tb.topo.iqn(CLIENT)
    states = f"for s in /sys/class/iscsi_session/session*; do grep -qx {iqn} $s/targetname && cat $s/state; done; true"
    assert tb.exec("guest0", ["sh", "-c", states]).split() == ["LOGGED_IN"]
    # the target refuses logins and drops its session, as a target restart does
    tb.python(CLIENT, "storage.py", "tpg", {"iqn": iqn, "action": "disable"})
    try:
        assert tb.until("guest0", f'[ "$({states})" != LOGGED_IN ]', 120), "the session never dropped"
    finally:
        tb.python(CLIENT, "storage.py", "tpg", {"iqn": iqn, "action": "enable"})
    # open-iscsi logs in again by itself (I/O was queued, not failed)
    assert tb.until("guest0", f'[ "$({states})" = LOGGED_IN ]', 180), "the session never came back"
    # both legs of the guest's array are still in it
    md = tb.exec("guest0", ["findmnt", "-n", "-o", "SOURCE", tb.mountpoint(disk)]).strip()
    detail = tb.exec("guest0", ["sh", "-c", f"mdadm --detail $(echo {md} | sed 's/p[0-9]*$//')"])
    assert "Active Devices : 2" in detail, detail
    date = full_dump(amanda, FAULT)
    assert restored_exact(amanda, FAULT, date, tb.manifest(disk))
    nothing_left(tb, CLIENT, status_user=amanda.layout.user)
    record("scenarios survived")


def test_the_storage_host_restarted_in_the_middle_of_a_dump(amanda):
    tb = amanda.tb
    disk = FAULTS[FAULT][0]
    held = HeldDump(amanda, FAULT)
    amanda.as_backup("amcleanup", "-k", FAULT)      # its server side cannot outlive the client here
    tb.restart(CLIENT)                               # every process on it dies; the kernel keeps its objects
    amanda.start_client()
    held.join()
    shown = status(amanda)
    assert "is gone: a leftover" in shown and "present" in shown, shown
    # the admin's own command removes it, its mount gone with the restart (the next run's
    # recovery of a leftover is the killed amdump's test, and of one whose mount went the
    # integration tier's: one held amdump less under TCG)
    out = tb.exec(CLIENT, ["snaplayers", "cleanup"], user=amanda.layout.user)
    assert "it was not whole" in out and "no longer mounted" in out, out
    assert out.splitlines()[-1] == "cleanup: 1 torn down, 0 failed", out
    nothing_left(tb, CLIENT, status_user=amanda.layout.user)
    date = full_dump(amanda, FAULT)
    assert restored_exact(amanda, FAULT, date, tb.manifest(disk))
    nothing_left(tb, CLIENT, status_user=amanda.layout.user)
    record("scenarios survived")


def test_what_the_guest_changes_after_the_snapshot_is_in_the_next_incremental(amanda):
    """GNU tar dates its listed-incremental file at its own start, after the snapshot: a file
    the VM changes in between goes into this dump as it was and, unless the plugin dates that
    file back to the snapshot, into no incremental before the next full dump."""
    tb = amanda.tb
    disk = FAULTS[FAULT][0]
    amanda.as_backup("amadmin", FAULT, "force", amanda.client_host, disk)
    before = {d.date for d in amanda.dumps(FAULT)}
    held = HeldDump(amanda, FAULT)          # snapshot taken, tar not yet started
    try:
        # appends to a file (the one tar would skip), deletes one, adds a directory; the
        # guest's manifest is what it holds now
        tb.python("guest0", "guest.py", "change", {"root": tb.mountpoint(disk), "manifest": tb.manifest_path(disk)})
    finally:
        held.go()
    code, _ = held.join()
    full = [d for d in amanda.dumps(FAULT) if d.date not in before and d.status.split()[-1:] == ["OK"]]
    assert code == 0 and [d.level for d in full] == [0], amanda.report(FAULT)
    amanda.as_backup("amadmin", FAULT, "force-level-1", amanda.client_host, disk)
    code, _ = amanda.amdump(FAULT)
    incr = [d for d in amanda.dumps(FAULT) if d.date not in before | {full[0].date}
            and d.status.split()[-1:] == ["OK"]]
    assert code == 0 and [d.level for d in incr] == [1], amanda.report(FAULT)
    # the level 0 holds the snapshot's (older) data; level 0 + level 1 hold the guest's now
    assert restored_exact(amanda, FAULT, [full[0].date, incr[0].date], tb.manifest(disk))
    nothing_left(tb, CLIENT, status_user=amanda.layout.user)
    record("scenarios survived")

