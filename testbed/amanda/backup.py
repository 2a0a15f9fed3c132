"""One verified backup: amcheck, amdump while the guest writes, amreport, restore, compare.

Used by `testbed backup` (the last step of `make testbed`) and by the end-to-end tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List

from ..run import TestbedError
from . import SERVER, Amanda, Dump


@dataclass
class DleResult:
    disk: str
    levels: List[int] = field(default_factory=list)
    files: int = 0
    identical: bool = False
    log_records: int = 0
    log_ok: bool = False
    why: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.levels) and self.identical and self.log_ok


def live_logs(tb, only=None) -> Dict[str, str]:
    return {v.name: f"{tb.mountpoint(v.name)}/live/log" for v in tb.topo.variants if not only or v.name in only}


def dump_while_writing(am: Amanda, only=()) -> float:
    """amdump (of every DLE, or `only` these) with a writer appending fsynced records on each
    one's guest filesystem while Amanda dumps. The writers wait out the estimates: what the
    estimates' snapshots hold is thrown away, and the writers' I/O tripled each of the
    estimate phase's serial script calls (measured: ~24 s each with them, ~8 s without)."""
    tb = am.tb
    logs = live_logs(tb, only)
    pairs = [[logs[n] for n in names] for names in tb.topo.groups.values() if set(names) <= set(logs)]
    writers = tb.python("guest0", "guest.py", "writers-start", {"logs": list(logs.values()), "pairs": pairs})
    pids = [str(pid) for pid in writers["pids"].values()]
    outcome: Dict[str, object] = {}

    def amdump():
        try:
            outcome["result"] = am.amdump(disks=only)
        except BaseException as err:        # re-raised in the caller's thread
            outcome["error"] = err
    run = threading.Thread(target=amdump, name="amdump")
    try:
        tb.exec("guest0", ["kill", "-STOP", *pids])
        marker = f"/tmp/amdump-started-{time.monotonic_ns()}"
        tb.exec(SERVER, ["touch", marker])
        run.start()
        estimated = am.wait_for_estimates(marker, run.is_alive)
        tb.exec("guest0", ["kill", "-CONT", *pids])
        run.join()
        if "error" in outcome:
            raise outcome["error"]
        code, seconds = outcome["result"]
        if code == 0 and not estimated:     # else the guest never wrote while Amanda dumped
            raise TestbedError("amdump ended before its log said the estimates were done")
    finally:
        tb.run("guest0", ["kill", "-CONT", *pids])
        if run.is_alive():      # a failed poll: amdump must not run on under the next tests
            run.join()
        tb.python("guest0", "guest.py", "writers-stop", writers)
    report = am.report()
    if code != 0:
        raise TestbedError(f"amdump exited {code}; amreport says:\n{report[-3000:]}\n"
                           f"client debug log:\n{am.client_log('')[-3000:]}")
    return seconds


def verify(am: Amanda, how: str = "amfetchdump", only=None) -> List[DleResult]:
    """Restore every DLE (or `only` these) on the server and compare with the guest's
    manifest, byte for byte. A few calls for all DLEs: each costs seconds under TCG."""
    tb = am.tb
    good = [d for d in am.dumps() if d.ok]
    names = [v.name for v in tb.topo.variants if not only or v.name in only]
    results = {n: DleResult(n, sorted(d.level for d in good if d.disk == n)) for n in names}
    dumped = {n: chain([d for d in good if d.disk == n]) for n in names if results[n].levels}
    for n in names:
        if not results[n].levels:
            results[n].why = "no OK dump"
        elif not dumped[n]:
            results[n].why = "no OK level 0 to restore from"
            del dumped[n]
    if how == "amfetchdump":
        trees = am.fetch_each(dumped, f"/srv/restore/{how}") if dumped else {}
    else:
        trees = {}
        for n in dumped:
            trees[n] = f"/srv/restore/{how}/{n}"
            am.recover(n, trees[n])
    expected = tb.python(tb.topo.guest, "guest.py", "read", {"paths": {n: tb.manifest_path(n) for n in trees}})
    seen = tb.python(SERVER, "guest.py", "restored", {"trees": trees}) if trees else {}
    for n, tree in trees.items():
        r = results[n]
        r.files = len(expected[n].splitlines())
        r.identical = seen[n]["manifest"] == expected[n]
        if not r.identical:
            exp, got = set(expected[n].splitlines()), set(seen[n]["manifest"].splitlines())
            r.why = f"differs: missing/changed {sorted(exp - got)[:3]}, unexpected {sorted(got - exp)[:3]}"
        r.log_records, r.log_ok = seen[n]["records"], seen[n]["ok"]
        if not r.log_ok:
            r.why += f" live log: {seen[n]['why']}"
    return [results[n] for n in names]


def group_skew(results: List[DleResult], topo) -> Dict[str, int]:
    """Per group of a VM's disks: how far apart their restored live logs are, in records. One
    writer appends each record to all of them: one instant leaves at most the one in flight."""
    records = {r.disk: r.log_records for r in results if r.log_ok}
    return {name: max(records[n] for n in names) - min(records[n] for n in names)
            for name, names in topo.groups.items() if all(n in records for n in names)}


def chain(dumps: List[Dump]) -> List[Dump]:
    """What restores a DLE as its last dump saw it: its last level 0 and each dump after it,
    oldest first (an older level 1 applied after a newer level 0 would roll files back)."""
    dumps = sorted(dumps, key=lambda d: (d.date, d.level))
    fulls = [i for i, d in enumerate(dumps) if d.level == 0]
    return dumps[fulls[-1]:] if fulls else []


def table(results: List[DleResult]) -> str:
    lines = [f"  {'DLE':<14} {'levels':<8} {'files':>5}  {'byte-exact':<10} {'live log':<16} result"]
    for r in results:
        log = f"{r.log_records} records" if r.log_ok else "BROKEN"
        lines.append(f"  {r.disk:<14} {','.join(map(str, r.levels)) or '-':<8} {r.files:>5}  "
                     f"{'yes' if r.identical else 'NO':<10} {log:<16} {'OK' if r.ok else 'FAILED ' + r.why}")
    return "\n".join(lines)
