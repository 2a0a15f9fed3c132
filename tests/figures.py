"""The figures of the fault tier (issue #5), filled by the tests that survive a scenario and
printed at the end of the run by conftest's terminal summary."""

FIGURES = {}


def record(key, n=1):
    FIGURES[key] = FIGURES.get(key, 0) + n
