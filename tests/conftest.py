"""Session fixtures for the integration and end-to-end tiers: the engine (chosen by probing),
the node image, and one testbed per xdist worker, destroyed at the end with a leak check."""

import os

import pytest

from testbed.fixture.topology import default


@pytest.fixture(scope="session")
def worker(request):
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture(scope="session")
def testbed_config():
    """TESTBED_* as `testbed` reads them: a matrix cell sets them for its child pytest."""
    from testbed.config import Config
    return Config.from_env()


class LiveLines:
    """The session's long steps on the terminal as they happen (engine boot, images, fixture,
    each amdump): pytest would hold them until the test ends, minutes of silence under TCG."""

    def __init__(self, config):
        self.capture = config.pluginmanager.getplugin("capturemanager")
        self.terminal = config.pluginmanager.getplugin("terminalreporter")
        self.held = ""

    def write(self, text: str) -> None:
        self.held += text
        *lines, self.held = self.held.split("\n")
        if self.capture is None or self.terminal is None:     # xdist worker, -p no:terminal
            import sys
            sys.stderr.write("".join(line + "\n" for line in lines))
            return
        with self.capture.global_and_fixture_disabled():
            tw = getattr(self.terminal, "_tw", None)
            if lines and tw is not None and tw.width_of_current_line:
                self.terminal.write("\n")         # not after the progress dots: a line of its own
            for line in lines:
                self.terminal.write_line(line)
            self.terminal.flush()

    def flush(self) -> None:
        pass


@pytest.fixture(scope="session")
def steps(testbed_config, request):
    from figures import STEPS
    from testbed.progress import Steps
    c = testbed_config
    s = Steps(f"testbed session (kernel {c.kernel}, {c.suite}, Amanda layout {c.layout})",
              out=LiveLines(request.config))
    STEPS.append(s)                        # printed in the time profile at the end
    return s


@pytest.fixture(scope="session")
def engine(testbed_config, steps):
    """A docker client for an engine whose kernel holds dm, md, LIO and iSCSI."""
    import docker

    from testbed.engine import engine as choose
    from testbed.images import built_first
    eng, why = choose(testbed_config, steps)
    host = eng.up(prepare=built_first(testbed_config, steps))
    os.environ["DOCKER_HOST"] = host       # testinfra's docker backend reads it
    client = docker.DockerClient(base_url=host, timeout=900)
    client.testbed_engine = eng
    return client


@pytest.fixture(scope="session")
def node_image(engine, testbed_config, steps):
    from testbed import cache
    from testbed.images import node
    with cache.lock("images"):             # xdist workers build it once
        return node(engine, testbed_config, steps)


@pytest.fixture(scope="session")
def testbed(engine, node_image, testbed_config, steps, worker):
    from testbed.fixture import Testbed, janitor, new_prefix, plugin_names, reset
    from testbed.lifecycle import Lifecycle
    # other testbeds share this engine (matrix cells): no global reset, no global leak check
    shared = testbed_config.shared
    if worker == "master" and not shared:
        reset(engine, node_image)          # destroy first: leftovers of an interrupted run
    tb = Testbed(engine, node_image, default(new_prefix(worker if worker != "master" else "")), steps)
    life = Lifecycle(tb, first=[tb])
    life.up()
    if testbed_config.cell_report:
        report_versions(tb, testbed_config.cell_report)
    yield tb
    left = life.down()
    if worker == "master" and not shared:  # nobody else runs now: snaplayers' own objects too
        more = janitor(engine, node_image, plugin_names(engine, node_image), "check")
        left = {k: left.get(k, []) + more.get(k, []) for k in set(left) | set(more)}
    leaked = {k: v for k, v in left.items() if v}
    assert not leaked, f"kernel objects leaked by testbed {tb.prefix}: {leaked}"
    from figures import record
    record("leak checks passed")


def report_versions(tb, path):
    import json
    query = "dpkg-query -W -f '${Package} ${Version}\\n' lvm2 mdadm amanda-common sudo python3 2>/dev/null; true"
    versions = dict(line.split(" ", 1) for line in tb.exec("storage0", ["sh", "-c", query]).splitlines())
    versions["kernel"] = tb.exec("storage0", ["uname", "-r"]).strip()
    # Amanda as it was built (a rebuilt one is no Debian package): its user and application dir
    build = tb.exec("storage0", ["sh", "-c", "amgetconf build.VERSION; amgetconf build.CLIENT_LOGIN; "
                                             "amgetconf build.APPLICATION_DIR"]).split()
    if not versions.get("amanda-common"):       # a purged package is listed with no version
        versions["amanda-common"] = f"{build[0]} (built)"
    versions["amanda-user"], versions["application-dir"] = build[1], build[2]
    with open(path, "w") as f:
        json.dump(versions, f)


@pytest.fixture(scope="session")
def amanda(testbed, testbed_config):
    """A real Amanda server next to the testbed; storage0 is its client."""
    from testbed.amanda import Amanda
    am = Amanda(testbed, testbed_config.logs)
    am.create()
    yield am
    if am.fetch_retries:        # a restore tool's crash, not a lost byte: said, never hidden
        from figures import record
        record("amfetchdump aborts of Amanda's own, retried", am.fetch_retries)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed end-to-end test keeps Amanda's logs before the testbed is destroyed: a matrix
    cell's report can then say why a dump hung, not only that it did."""
    report = yield
    if report.when == "call" and report.failed and "amanda" in getattr(item, "funcargs", {}):
        try:
            kept = item.funcargs["amanda"].keep_logs(item.name[:48])
        except Exception as err:                # the failure's own report matters more
            kept = f"not kept: {err}"
        report.sections.append(("Amanda's logs", f"kept in {kept}"))
    return report


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None:                   # its tear-down is the session's: testbeds, leak check
        from figures import LAST
        LAST.add(item.nodeid)


def pytest_runtest_logreport(report):
    from figures import LAST, SECONDS, SESSION
    if report.when == "teardown" and report.nodeid in LAST:
        SESSION["session tear-down (testbeds destroyed, leak check)"] = report.duration
        return
    SECONDS[report.nodeid] = SECONDS.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """The fault tier's figures: what was tried, what survived, what was lost or leaked."""
    import sys
    from figures import FIGURES, profile
    api = sys.modules.get("test_script_api")
    if not FIGURES and not api:
        return
    figures = dict(FIGURES)
    stats = terminalreporter.stats
    executed = getattr(api, "EXECUTED", [])
    rows = [("hostile inputs tried", len(executed)),
            ("commands they executed", sum(executed)),
            ("fault scenarios survived", figures.get("scenarios survived", 0)),
            ("bytes compared (snapshot views, restores)", figures.get("bytes compared", 0)),
            ("bytes lost (in differing files)", figures.get("bytes lost", 0)),
            *((key, figures.get(key, "not run")) for key in (
                "red-team argv tried (real sudo -l, installed helper)", "red-team argv admitted",
                "setuid, device-node, symlink and stale-name cases refused",
                "forged journals refused (root's cleanup, the helper)")),
            ("kernel objects leaked", "see errors" if [
                r for r in stats.get("error", []) if "leaked" in str(r.longrepr)] else
             "0 (leak check passed)" if figures.get("leak checks passed") else "not checked (no testbed)")]
    # and every other figure a test recorded (what it measured: the thin states, shared
    # snapshots, discover's time and the room it found), or it is recorded for nobody
    shown = {"scenarios survived", "bytes compared", "bytes lost", "leak checks passed",
             *(name for name, _ in rows)}
    rows += [(key, figures[key]) for key in sorted(figures) if key not in shown]
    terminalreporter.write_sep("=", "snaplayers figures")
    for name, value in rows:
        terminalreporter.write_line(f"  {name:<58} {value}")
    terminalreporter.write_sep("=", "where the time went (seconds)")
    for name, secs in profile():
        terminalreporter.write_line(f"  {name:<76} {secs:8.1f}")
