"""The matrix's cell list and table (the cells themselves run in `make matrix`)."""

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    spec = importlib.util.spec_from_file_location(f"matrix_{name}", os.path.join(HERE, "..", "matrix", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_suite_and_kernel_is_a_cell_and_one_has_zmandas_layout(monkeypatch):
    monkeypatch.delenv("MATRIX_CELLS", raising=False)
    cells = load("cells").cells()
    assert {(s, k) for s, k, _ in cells} == {(s, k) for s in ("bullseye", "bookworm", "trixie")
                                              for k in ("6.1", "6.12")}
    assert [c for c in cells if c[2] != "debian"] == [("bookworm", "6.12", "zmanda")]
    # the default cell (`make test`: bookworm, 6.1) keeps Debian's layout
    assert ("bookworm", "6.1", "debian") in cells


def test_picked_cells_take_an_optional_layout(monkeypatch):
    monkeypatch.setenv("MATRIX_CELLS", "trixie/6.1 bullseye/6.12/zmanda bookworm/6.12")
    cells = load("cells")
    assert cells.cells() == [("trixie", "6.1", "debian"), ("bullseye", "6.12", "zmanda"),
                             ("bookworm", "6.12", "zmanda")]
    assert [cells.name_of(*c) for c in cells.cells()] == ["trixie-6.1", "bullseye-6.12-zmanda",
                                                          "bookworm-6.12-zmanda"]


def test_the_table_shows_each_cells_amanda_layout_and_a_failed_cells_reason():
    table = load("conftest").table([
        {"suite": "bookworm", "kernel": "6.12", "layout": "zmanda", "passed": True, "summary": "11 passed",
         "reason": "", "minutes": 30.2,
         "versions": {"lvm2": "2.03.16-2", "mdadm": "4.2-5", "amanda-common": "3.5.1 (built)",
                      "amanda-user": "amandabackup", "application-dir": "/usr/libexec/amanda/application",
                      "sudo": "1.9.13p3-1+deb12u1", "kernel": "6.12.117+deb13-amd64"}},
        {"suite": "bullseye", "kernel": "6.1", "layout": "debian", "passed": False, "summary": "",
         "reason": "mmdebstrap bullseye failed", "minutes": 1.0, "versions": {}}]).splitlines()
    assert "| amandabackup, /usr/libexec/amanda/application |" in table[2] and "passed (11 passed)" in table[2]
    assert "FAILED: mmdebstrap bullseye failed" in table[3] and "| debian |" in table[3]


def test_a_failed_cells_reason_is_the_plugins_line_else_amandas_error():
    why = load("cells").why
    log = ("E   AssertionError: 'logical volume x/nosuch does not exist' not in:\n"
           "E     ERROR: host: selfcheck request failed: timeout waiting for REP\n")
    assert why(log) == "ERROR: host: selfcheck request failed: timeout waiting for REP"
    assert why(log + "E     ERROR: snaplayers: no such LV\n") == "ERROR: snaplayers: no such LV"
    assert why("") == "no output"
    # the failed test's name first: the plugin's line may be the one that test expected
    summary = ("E       AssertionError: Hostname: amanda\n"
               "E           host lv-ext4 lev 0  FAILED [Script 'script-snaplayers' command 'POST-DLE-BACKUP': "
               "snaplayers: snapshot overflowed]\n"
               "FAILED tests/e2e/test_amanda_faults.py::test_a_snapshot_overflowing - AssertionError: Hostname\n")
    assert why(summary).startswith("test_a_snapshot_overflowing: host lv-ext4 lev 0  FAILED [Script")


def test_a_cell_gives_its_child_pytest_its_settings_and_keeps_the_rest(tmp_path):
    from testbed.config import Config
    parent = {"PATH": "/usr/bin", "TESTBED_ACCEL": "tcg", "TESTBED_SUITE": "bookworm"}
    env = load("cells").cell_environment("trixie", "6.12", "zmanda", "/r/trixie.versions.json", "/r/trixie.logs",
                                         parent)
    assert env["PATH"] == "/usr/bin"
    assert (env["TESTBED_SUITE"], env["TESTBED_KERNEL"], env["TESTBED_LAYOUT"]) == ("trixie", "6.12", "zmanda")
    assert (env["TESTBED_SHARED"], env["TESTBED_CELL_REPORT"], env["TESTBED_LOGS"]) == \
        ("1", "/r/trixie.versions.json", "/r/trixie.logs")
    child = Config.from_env(env)          # what the cell's tests/conftest.py reads
    assert (child.suite, child.kernel, child.layout, child.shared, child.accel) == \
        ("trixie", "6.12", "zmanda", True, "tcg")
    assert child.cell_report == "/r/trixie.versions.json" and child.logs == "/r/trixie.logs"
