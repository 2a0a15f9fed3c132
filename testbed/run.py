"""One way to run a command, on this host, in a node (docker exec) or on the VM engine (ssh).

Argv lists only, logged before they run; a command that fails raises CommandFailed, which names
where it ran, the command, its exit status and the tail of its stderr.
"""

from __future__ import annotations

import logging
import subprocess
from typing import NamedTuple, Optional, Sequence

log = logging.getLogger("testbed")

TAIL_LINES = 15
TAIL_CHARS = 2000


class TestbedError(Exception):
    """A step failed; the message names the cause and, where there is one, the fix."""

    __test__ = False    # not a test class, whatever pytest thinks of the name


def shown(argv: Sequence) -> str:
    """argv as a message shows it: a script passed as one argument is cut short."""
    return " ".join(a if len(a) < 80 else a[:60] + "..." for a in map(str, argv))


def tail(text: str) -> str:
    lines = text.strip().splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


class CommandFailed(TestbedError):
    """A command exited with a status it was not allowed to."""

    def __init__(self, argv: Sequence, status: int, stderr: str = "", where: str = "host",
                 stdout: str = ""):
        self.argv = [str(a) for a in argv]
        self.status = status
        self.stderr = stderr
        self.stdout = stdout
        self.where = where
        # a command that says nothing on stderr may still have said why on stdout
        said = tail(stderr) or tail(stdout)
        super().__init__(f"{where}: `{shown(self.argv)}` exited {status}" +
                         (":\n  " + said.replace("\n", "\n  ") if said else ""))


class Result(NamedTuple):
    """What a node's command did; unpacks as (status, stdout, stderr)."""
    status: int
    stdout: str
    stderr: str


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def run(argv: Sequence, *, check: bool = True, ok: Sequence[int] = (0,), input: Optional[bytes] = None,
        timeout: Optional[float] = None, cwd: Optional[str] = None, env=None,
        where: str = "host") -> subprocess.CompletedProcess:
    """argv on this host, stdin from /dev/null unless input is given; stdout and stderr as bytes."""
    argv = [str(a) for a in argv]
    log.debug("+ %s", " ".join(argv))
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, cwd=cwd, env=env,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise TestbedError(f"{where}: {argv[0]}: not installed ({err})") from None
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{where}: `{shown(argv)}`: no answer after {timeout} s") from None
    if check and proc.returncode not in ok:
        raise CommandFailed(argv, proc.returncode, _text(proc.stderr), where, _text(proc.stdout))
    return proc


def ssh(login: Sequence[str], argv: Sequence[str], *, where: str, check: bool = True,
        timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """argv on a machine reached by the ssh command line `login`; errors name argv, not ssh's."""
    proc = run([*login, *argv], check=False, timeout=timeout, where=where)
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, _text(proc.stderr), where, _text(proc.stdout))
    return proc


def exec_in(container, argv: Sequence[str], *, where: str, user: str = "root",
            environment: Optional[dict] = None, check: bool = True, ok: Sequence[int] = (0,)) -> Result:
    """argv in a running container (docker exec), as user."""
    argv = [str(a) for a in argv]
    log.debug("+ [%s] %s", where, shown(argv))
    code, (out, err) = container.exec_run(argv, user=user, environment=environment, demux=True)
    result = Result(code, _text(out), _text(err))
    if check and code not in ok:
        raise CommandFailed(argv, code, result.stderr, where, result.stdout)
    return result


def run_container(client, image: str, argv: Sequence[str], *, where: str, **kwargs) -> bytes:
    """A throw-away container that runs argv and is removed; its stdout."""
    import docker.errors
    try:
        return client.containers.run(image, list(argv), remove=True, **kwargs)
    except docker.errors.ContainerError as err:
        raise CommandFailed(argv, err.exit_status, _text(err.stderr), where) from None
