"""The debug log: one file per call, Amanda's line format, every line on disk as it is written."""

import os
import re
import subprocess
import sys

from snaplayers import log

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (\d+) (\S+): (.*)\Z")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_file_per_call_named_and_formatted_like_amandas(tmp_path):
    path = log.start(str(tmp_path / "log"), "script-snaplayers")
    assert re.fullmatch(rf"script-snaplayers\.\d{{14}}\.{os.getpid()}\.debug", os.path.basename(path))
    log.get("snaplayers.run").info("+ %s", "/usr/sbin/lvs 'a b'")
    log.get("snaplayers").error("failed: %s", "x")
    log.get("snaplayers").info("100% literal, no arguments")
    # read while the file is still open: nothing waits in a buffer
    rows = [LINE.match(line).groups() for line in open(path).read().splitlines()]
    assert rows == [(str(os.getpid()), "snaplayers.run", "+ /usr/sbin/lvs 'a b'"),
                    (str(os.getpid()), "snaplayers", "failed: x"),
                    (str(os.getpid()), "snaplayers", "100% literal, no arguments")]
    assert log.started()


def test_each_start_writes_to_its_own_file_only(tmp_path):
    first = log.start(str(tmp_path / "a"), "script-snaplayers")
    log.get("snaplayers").info("one")
    second = log.start(str(tmp_path / "b"), "script-snaplayers")
    log.get("snaplayers").info("two")
    assert open(first).read().endswith("one\n") and "two" not in open(first).read()
    assert open(second).read().count("\n") == 1 and open(second).read().endswith("two\n")


def test_a_log_dir_that_cannot_be_written_is_no_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert log.start(str(blocker / "log"), "script-snaplayers") == ""
    assert not log.started()
    log.get("snaplayers").info("goes nowhere")      # and raises nothing


def test_a_killed_call_keeps_every_line(tmp_path):
    code = ("import os, signal, sys; from snaplayers import log; "
            f"log.start({str(tmp_path)!r}, 'script-snaplayers'); "
            "[log.get('snaplayers.run').info('+ step %d', i) for i in range(50)]; "
            "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -9
    (name,) = os.listdir(tmp_path)
    lines = (tmp_path / name).read_text().splitlines()
    assert [LINE.match(line).group(3) for line in lines] == [f"+ step {i}" for i in range(50)]
