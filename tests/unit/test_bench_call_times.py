"""The benchmark's reading of one plugin call's debug log, on lines the plugin's own logger wrote."""

import importlib.util
import os
import time

from snaplayers import log as plugin_log

HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_calls_wall_time_commands_and_their_time_come_from_its_log(tmp_path):
    spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "..", "bench", "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = plugin_log.start(str(tmp_path), "script-snaplayers")
    run = plugin_log.get("snaplayers.run")
    plugin_log.get("snaplayers").info("PRE-DLE-BACKUP md-part-ext4")
    for seconds in (0.25, 0.5):
        run.info("+ %s", "lvcreate --snapshot")
        run.info("  exit %d in %.3fs", 0, seconds)
    time.sleep(0.3)
    plugin_log.get("snaplayers").info("set up")
    wall, in_commands, n = bench.call_times(open(path).read().splitlines())
    assert n == 2 and in_commands == 0.75
    assert 0.29 < wall < 2.0
