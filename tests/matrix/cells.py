"""`make matrix`: the end-to-end tier (Amanda end to end and its faults) once per cell (Debian suite of the nodes x guest kernel),
each cell a child pytest with its own testbed; pytest-xdist runs the two kernels' cells side by
side, and cells with the same kernel share that kernel's engine, one cell after the other. A cell that fails (a package missing in a suite,
a build error) is a failed row with its reason; it never stops the other cells.

One cell runs Amanda as Zmanda's RPMs lay it out (user amandabackup, /usr/libexec/amanda),
rebuilt from Debian's source (testbed/images/zmanda.py): bookworm on 6.12, where Debian's own layout is
already proven by bookworm on 6.1 (the default cell, `make test`).

MATRIX_CELLS="bookworm/6.1 trixie/6.12 bullseye/6.1/zmanda" picks cells (suite/kernel[/layout]);
the table is printed at the end and written to tests/matrix/results.json."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

SUITES = ("bullseye", "bookworm", "trixie")
KERNELS = ("6.1", "6.12")
LAYOUT = {("bookworm", "6.12"): "zmanda"}     # every other cell: Debian's own packages
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def cells():
    chosen = [c.split("/") for c in os.environ.get("MATRIX_CELLS", "").split()]
    picked = [(c[0], c[1], c[2] if len(c) > 2 else LAYOUT.get((c[0], c[1]), "debian")) for c in chosen]
    return picked or [(s, k, LAYOUT.get((s, k), "debian")) for k in KERNELS for s in SUITES]


def name_of(suite, kernel, layout):
    return f"{suite}-{kernel}" + ("" if layout == "debian" else f"-{layout}")


def why(text: str) -> str:
    """Which tests failed, then the line that says what went wrong: the plugin's own message if
    there is one, else Amanda's ERROR line (an assertion names what was missing, Amanda says
    why). The test's name comes first: a plugin line may be what the test expected to see."""
    errors = [ln[2:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    ours = [ln for ln in errors if "snaplayers:" in ln]
    amandas = [ln for ln in errors if ln.startswith("ERROR")]
    line = (ours or amandas or errors or text.strip().splitlines() or ["no output"])[0]
    tests = [ln.split("::")[-1].split(" ")[0] for ln in text.splitlines()
             if ln.startswith(("FAILED ", "ERROR ")) and "::" in ln]
    return ((", ".join(tests) + ": " if tests else "") + line)[:240]


def cell_environment(suite, kernel, layout, report, kept, env=None):
    """The child pytest's environment: this one's, with the cell's settings as testbed.config
    writes them (its own engine-sharing testbed, its report, its kept logs)."""
    from testbed.config import Config
    env = dict(os.environ if env is None else env)
    cell = Config.from_env(env, suite=suite, kernel=kernel, layout=layout, shared=True,
                           cell_report=report, logs=kept)
    return {**env, **cell.environment()}


def run_cell(suite, kernel, layout):
    os.makedirs(RESULTS, exist_ok=True)
    name = name_of(suite, kernel, layout)
    report = os.path.join(RESULTS, f"{name}.versions.json")
    log = os.path.join(RESULTS, f"{name}.log")
    kept = os.path.join(RESULTS, f"{name}.logs")      # Amanda's logs of each failed test
    for stale in (report, log):
        if os.path.exists(stale):
            os.unlink(stale)
    shutil.rmtree(kept, ignore_errors=True)
    env = cell_environment(suite, kernel, layout, report, kept)
    start = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "e2e",
                             "tests/e2e"], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT).returncode
    minutes = (time.monotonic() - start) / 60
    text = open(log).read()
    versions = json.load(open(report)) if os.path.exists(report) else {}
    summary = [ln for ln in text.splitlines() if " passed" in ln or " failed" in ln or " error" in ln]
    reason = why(text) if rc != 0 else ""
    row = {"suite": suite, "kernel": kernel, "layout": layout, "versions": versions, "passed": rc == 0,
           "summary": summary[-1].strip("= ") if summary else "", "reason": reason, "minutes": round(minutes, 1)}
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(row, f)
    assert rc == 0, f"cell {name}: {reason} (log: {log})"


def kernel_class(kernel):
    """One test class per kernel: `--dist loadscope` gives a class to one worker, so cells that
    share a kernel run one after the other (their leak checks look at the kernel's whole dm table
    and /dev, which another cell's stacks would fill) and the kernels run side by side.
    (xdist_group marks do not group under pytest 9.2 with xdist 3.8: measured.)"""
    mine = [c for c in cells() if c[1] == kernel]

    @pytest.mark.parametrize("suite,kernel,layout", mine, ids=[name_of(*c) for c in mine])
    def test_cell(self, suite, kernel, layout):
        run_cell(suite, kernel, layout)
    return type(f"TestKernel{kernel.replace('.', '_')}", (), {"test_cell": test_cell})


for _kernel in dict.fromkeys(c[1] for c in cells()):
    globals()[f"TestKernel{_kernel.replace('.', '_')}"] = kernel_class(_kernel)
