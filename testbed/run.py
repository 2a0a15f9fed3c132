"""One way to run a command, on this host, in a node (its agent, started by docker exec) or on
the VM engine (ssh).

Argv lists only, logged before they run; a command that fails raises CommandFailed, which names
where it ran, the command, its exit status and the tail of its stderr.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import subprocess
import threading
from typing import Dict, NamedTuple, Optional, Sequence

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
    """argv in a running container, as user: through the container's agent (agent.py), as
    docker exec would run it."""
    argv = [str(a) for a in argv]
    log.debug("+ [%s] %s", where, shown(argv))
    result = AGENTS.run(container, argv, user, environment, where)
    if check and result.status not in ok:
        raise CommandFailed(argv, result.status, result.stderr, where, result.stdout)
    return result


class Agent:
    """One agent.py in a container, reached through the attached stdin and stdout of the docker
    exec that started it."""

    # it reads its own source from stdin: a short command line, which no pgrep of a test matches
    BOOT = "import sys; exec(sys.stdin.buffer.read(int(sys.stdin.buffer.readline())))"

    def __init__(self, container):
        import socket

        api = container.client.api
        started = api.exec_create(container.id, ["python3", "-c", self.BOOT, "testbed-agent"],
                                  stdin=True, stdout=True, stderr=True, user="root")
        raw = api.exec_start(started["Id"], socket=True)
        self._keep = raw                            # the hijacked response: closing it ends the agent
        self.sock: socket.socket = getattr(raw, "_sock", raw)
        self.said = b""                             # the agent's own stderr, for a failure's message
        self._out = bytearray()
        try:
            self.sock.settimeout(None)              # a command takes as long as it takes
            with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py"), "rb") as f:
                source = f.read()
            self.sock.sendall(b"%d\n" % len(source) + source)
        except BaseException:
            self.close()
            raise

    def alive(self) -> bool:
        """False once the exec ended (its container restarted): the engine closed the stream."""
        import select
        import socket
        poll = select.poll()
        poll.register(self.sock, select.POLLIN)
        if not poll.poll(0):
            return True
        try:
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _frame(self) -> None:
        """One frame of docker's multiplexed stream: 8 bytes of header, then the payload."""
        head = self._read(8)
        payload = self._read(struct.unpack(">BxxxL", head)[1])
        if head[0] == 2:
            self.said = (self.said + payload)[-TAIL_CHARS:]
        else:
            self._out += payload

    def _read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            got = self.sock.recv(min(n - len(data), 1 << 20))
            if not got:
                raise EOFError
            data += got
        return bytes(data)

    def call(self, argv: Sequence[str], user: str, environment: Optional[dict]) -> Result:
        request = json.dumps({"argv": list(argv), "user": user, "env": environment}).encode()
        self.sock.sendall(struct.pack(">I", len(request)) + request)
        while len(self._out) < 4 or len(self._out) < 4 + struct.unpack(">I", self._out[:4])[0]:
            self._frame()
        n = 4 + struct.unpack(">I", self._out[:4])[0]
        answer = json.loads(bytes(self._out[4:n]))
        del self._out[:n]
        return Result(answer["status"], _text(base64.b64decode(answer["stdout"])),
                      _text(base64.b64decode(answer["stderr"])))

    def close(self) -> None:
        for thing in (self.sock, self._keep):
            try:
                thing.close()
            except OSError:
                pass


class Agents:
    """An agent for each container and calling thread: the plugin takes the process that runs
    it (now an agent) for its Amanda process, so a test's PRE- and POST-DLE calls, made from one
    thread, must have one parent, as a dump's calls have one sendbackup."""

    def __init__(self):
        self._agents: Dict[tuple, Agent] = {}
        self._lock = threading.Lock()

    def run(self, container, argv: Sequence[str], user: str, environment: Optional[dict],
            where: str) -> Result:
        key = (container.id, threading.get_ident())
        with self._lock:
            agent = self._agents.pop(key, None)
        if agent is not None and not agent.alive():
            agent.close()
            agent = None
        try:
            agent = agent or Agent(container)
            result = agent.call(argv, user, environment)
        except (EOFError, OSError, ValueError, struct.error) as err:
            said = _text(agent.said).strip() if agent else ""
            if agent:
                agent.close()
            raise TestbedError(f"{where}: `{shown(argv)}`: the testbed's agent in the node ended "
                               f"({type(err).__name__}{': ' + said if said else ''})") from None
        except BaseException:           # interrupted mid-answer: never read by the next call
            if agent:
                agent.close()
            raise
        with self._lock:
            self._agents[key] = agent
        return result

    def forget(self, container) -> None:
        """A restarted or removed container's agents died with it."""
        with self._lock:
            gone = [k for k in self._agents if k[0] == container.id]
            agents = [self._agents.pop(k) for k in gone]
        for agent in agents:
            agent.close()


AGENTS = Agents()


def run_container(client, image: str, argv: Sequence[str], *, where: str, **kwargs) -> bytes:
    """A throw-away container that runs argv and is removed; its stdout."""
    import docker.errors
    try:
        return client.containers.run(image, list(argv), remove=True, **kwargs)
    except docker.errors.ContainerError as err:
        raise CommandFailed(argv, err.exit_status, _text(err.stderr), where) from None
