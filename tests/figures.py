"""The figures of the fault tier, filled by the tests that survive a scenario and
printed at the end of the run by conftest's terminal summary."""

FIGURES = {}
STEPS = []          # the session's Steps: engine, images, fixtures, each Amanda run
SECONDS = {}        # test id -> seconds spent in its set-up, call and tear-down
LAST = set()        # the test whose tear-down is the session's
SESSION = {}        # the session's tear-down: not the last test's own time


def record(key, n=1):
    FIGURES[key] = FIGURES.get(key, 0) + n


def profile(top: int = 12):
    """Where the suite's time went: each tier, each long step, the fault tests, the slowest
    tests. Rows of (what, seconds)."""
    rows = []
    tiers = {}
    for test, secs in SECONDS.items():
        tier = test.split("/")[1] if test.startswith("tests/") and test.count("/") > 1 else "other"
        tiers[tier] = tiers.get(tier, 0) + secs
    rows += [(f"tier {tier} (tests' own time, fixtures included)", secs) for tier, secs in sorted(tiers.items())]
    merged = {}
    for steps in STEPS:
        for name, secs, how in steps.rows:
            n, total = merged.get(name, (0, 0.0))
            merged[name] = (n + 1, total + secs)
    rows += [(name if n == 1 else f"{name} x{n}", secs) for name, (n, secs) in merged.items()]
    rows += list(SESSION.items())
    faults = [(t, s) for t, s in SECONDS.items() if "faults" in t.split("::")[0]]
    rows += [(f"fault: {t.split('::')[-1][:64]}", s) for t, s in faults]
    slow = sorted(((s, t) for t, s in SECONDS.items() if (t, s) not in faults), reverse=True)[:top]
    rows += [(f"test: {t.split('::')[-1][:64]}", s) for s, t in slow]
    return rows
