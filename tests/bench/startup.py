"""Startup benchmark: wall time of `script-snaplayers support` (Amanda runs it before every
call) for each given executable, next to a bare interpreter start, interleaved, medians."""

import statistics
import subprocess
import sys
import time

ROUNDS = 40


def once(argv):
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(executables, rounds=ROUNDS):
    """Medians in seconds by case; prints a table."""
    cases = {"python3 -c pass (floor)": ["/usr/bin/python3", "-c", "pass"]}
    for exe in executables:
        cases[f"{exe} support"] = [exe, "support"]
        cases[f"{exe} PRE-HOST-BACKUP (no-op)"] = [exe, "PRE-HOST-BACKUP", "--execute-where", "client"]
    times = {name: [] for name in cases}
    for i in range(rounds):
        for name, argv in cases.items():     # interleaved: noise hits every case alike
            times[name].append(once(argv))
        print(f"\rstartup: round {i + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    floor = statistics.median(times["python3 -c pass (floor)"])
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{'case':<64} {'median ms':>9} {'x floor':>8}  target <= 50 ms")
    for name, med in medians.items():
        print(f"{name:<64} {med * 1000:9.1f} {med / floor:8.2f}  {'ok' if med <= 0.050 else 'MISSED'}")
    return medians


if __name__ == "__main__":
    main(sys.argv[1:])
