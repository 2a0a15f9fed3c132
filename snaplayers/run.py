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
from .helper import ENV, REFUSED, SET    # a refusal fails the command whatever its accepted statuses
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

    new_session = False     # True: a signal for this process never reaches the command it runs

    def __init__(self, sudo: str = "auto", debug: bool = False, policy: dict | None = None):
        self.use_sudo = sudo == "yes" or (sudo == "auto" and os.geteuid() != 0)
        self.debug = debug          # the debug property: each command's stdout in the log too
        self.helper = helper_path() if self.use_sudo else ""
        # without sudo, the helper's checks in this process: root acting on what others wrote
        self.policy = None if self.use_sudo else policy
        self.executed: list[list[str]] = []
        self._served = None         # one `sudo helper --serve` for all of this call's commands

    def argv(self, argv: Sequence[str]) -> list[str]:
        # -n: a password prompt is an error, never a hang; the helper finds the tool itself
        if self.use_sudo:
            return [tools.path("sudo"), "-n", self.helper, *argv]
        return [argv[0] if argv[0] == SET else tools.path(argv[0]), *argv[1:]]

    def run(self, argv: Sequence[str], accept: Sequence[int] = (0,)) -> Result:
        full = self.argv(argv)
        log.info("+ %s", shlex.join(full))      # quoted: a line can be pasted into a shell
        self.executed.append(full)
        start = time.monotonic()
        proc = self._refusal(full) or self._spawn(full)
        log.info("  exit %d in %.3fs", proc.returncode, time.monotonic() - start)
        for line in proc.stderr.splitlines():
            log.info("  stderr: %s", line)
        for line in proc.stdout.splitlines() if self.debug else ():
            log.info("  stdout: %s", line)
        if proc.returncode not in accept or (
                (self.use_sudo or self.policy is not None) and proc.returncode == REFUSED):
            raise CommandFailed(full, proc.returncode, proc.stderr)
        return proc

    def _refusal(self, full: list[str]) -> Result | None:
        """Without sudo but with a policy: the helper's own checks, in this process."""
        if self.use_sudo or self.policy is None:
            return None
        from .helper import NAME, admit
        try:
            admit(self.policy, [os.path.basename(full[0]), *full[1:]])
        except Exception as err:    # a refusal, or a guard that could not look: the same
            return Result(full, REFUSED, "", f"{NAME}: refused: {' '.join(str(err).split())}")
        return None

    def _spawn(self, full: list[str]) -> Result:
        if self.use_sudo:
            return self._through_helper(full)
        if full[0] == SET:      # the helper's own command, carried out here as it would
            return self._builtin(full)
        try:
            proc = subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=ENV, text=True,
                                  errors="replace", check=False,
                                  start_new_session=self.new_session)
        except OSError as err:
            return Result(full, 127, "", str(err))
        return Result(full, proc.returncode, proc.stdout, proc.stderr)

    def _builtin(self, full: list[str]) -> Result:
        from .helper import Refused, SET_TOOLS, run_builtin
        policy = self.policy or {"tools": {t: tools.path(t) for t in SET_TOOLS}}
        try:
            code, out, err = run_builtin(policy, full)
        except Refused as err:
            return Result(full, REFUSED, "", f"refused: {err}")
        return Result(full, code, out, err)

    def _through_helper(self, full: list[str]) -> Result:
        """The argv goes to the helper that sudo started once for this call; its answer comes
        back as one JSON line. If sudo or the helper is gone, their last words are the error."""
        import json
        if self._served is None:
            try:
                self._served = subprocess.Popen(
                    [tools.path("sudo"), "-n", self.helper, "--serve"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                    env=ENV)
            except OSError as err:
                return Result(full, 127, "", str(err))
        served = self._served
        try:
            served.stdin.write(json.dumps(full[3:]) + "\n")
            served.stdin.flush()
            line = served.stdout.readline()
        except OSError:         # the helper is gone: its exit status and stderr say why
            line = ""
        except BaseException:   # interrupted mid-request: its answer must not be the next one's
            self.close()
            raise
        try:
            code, out, err = json.loads(line)
            return Result(full, code, out, err)
        except ValueError:
            self.close()
            # no answer is never a tool's own (exit 1 can mean "no such array" to a layer)
            last = served.stderr.read().strip() or f"the helper answered {line[:80]!r}"
            return Result(full, REFUSED, "", f"{last} (exit {served.returncode})")

    def close(self) -> None:
        """The helper ends when its input does: after the command it runs, if any."""
        served, self._served = self._served, None
        if served is not None:
            try:
                served.stdin.close()
            except OSError:
                pass
            try:
                served.wait(timeout=600)
            except subprocess.TimeoutExpired:   # a command that hangs: sudo passes the signal on
                served.terminate()
                served.wait()


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
