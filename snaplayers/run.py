"""One way to run a command: argv only, LC_ALL=C, stdin from /dev/null, logged, typed errors."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence

from . import log as debug_log
from . import tools
from .errors import CommandFailed
from .helper import REFUSED     # a refusal fails the command whatever exit statuses it accepts
from .record import Record

log = debug_log.get("snaplayers.run")


class Result(Record):
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


HELPERS = ("/usr/libexec/snaplayers/helper", "/usr/local/libexec/snaplayers/helper")


def helper_path() -> str:
    """Where `snaplayers install` (or the package) put the helper: the first that exists."""
    return next((p for p in HELPERS if os.path.exists(p)), HELPERS[-1])


class Runner:
    """Runs privileged commands: as root directly, else through `sudo -n` and the helper, which
    admits only the argv the layers declare.

    `executed` keeps every argv this runner started: tests assert on it, and hostile input must
    leave it empty.
    """

    def __init__(self, sudo: str = "auto"):
        self.use_sudo = sudo == "yes" or (sudo == "auto" and os.geteuid() != 0)
        self.helper = helper_path() if self.use_sudo else ""
        self.executed: list[list[str]] = []

    def argv(self, argv: Sequence[str]) -> list[str]:
        # -n: a password prompt is an error, never a hang; the helper finds the tool itself
        if self.use_sudo:
            return [tools.path("sudo"), "-n", self.helper, *argv]
        return [tools.path(argv[0]), *argv[1:]]

    def run(self, argv: Sequence[str], accept: Sequence[int] = (0,)) -> Result:
        full = self.argv(argv)
        log.info("+ %s", shlex.join(full))      # quoted: a line can be pasted into a shell
        self.executed.append(full)
        start = time.monotonic()
        proc = self._spawn(full)
        log.info("  exit %d in %.3fs", proc.returncode, time.monotonic() - start)
        for line in proc.stderr.splitlines():
            log.info("  stderr: %s", line)
        if proc.returncode not in accept or (self.use_sudo and proc.returncode == REFUSED):
            raise CommandFailed(full, proc.returncode, proc.stderr)
        return proc

    def _spawn(self, full: list[str]) -> Result:
        env = {"PATH": tools.SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
        try:
            proc = subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, text=True,
                                  errors="replace", check=False)
        except OSError as err:
            return Result(full, 127, "", str(err))
        return Result(full, proc.returncode, proc.stdout, proc.stderr)


class ScriptedRunner(Runner):
    """A runner that answers from a function instead of running anything: for unit tests and
    `snaplayers plan`. `answer(argv)` returns (returncode, stdout) or None for (0, "")."""

    def __init__(self, answer=None, sudo: str = "no"):
        super().__init__(sudo)
        self.answer = answer or (lambda argv: None)

    def _spawn(self, full: list[str]) -> Result:
        bare = full[3:] if self.use_sudo else full
        reply: tuple | None = self.answer([os.path.basename(bare[0]), *bare[1:]])
        code, out = reply if reply is not None else (0, "")
        return Result(full, code, out, "" if code == 0 else "scripted failure")
