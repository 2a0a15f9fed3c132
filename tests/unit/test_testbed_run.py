"""testbed's one command runner and the in-node scripts' one sh(): each failure names where the
command ran, the command, its exit status and the tail of its stderr."""

import ast
import itertools
import os
import pwd
import socket as sock
import struct
import subprocess
import sys
import threading
import time

import docker.errors
import pytest

from testbed.fixture import SCRIPTS, script
from testbed.run import AGENTS, CommandFailed, Result, TestbedError, exec_in, run, run_container, ssh


def test_a_failing_host_command_names_itself_its_status_and_where():
    with pytest.raises(CommandFailed) as err:
        run(["false"])
    assert str(err.value) == "host: `false` exited 1"
    assert (err.value.argv, err.value.status, err.value.where) == (["false"], 1, "host")


def test_the_message_holds_the_tail_of_stderr():
    lines = "; ".join(f"echo line{i} >&2" for i in range(40))
    with pytest.raises(CommandFailed) as err:
        run(["sh", "-c", f"echo out; {lines}; exit 3"])
    message = str(err.value)
    assert message.startswith("host: `sh -c echo out; echo line0 >&2;") and " exited 3:\n  line25\n" in message
    assert message.endswith("line39") and "line24" not in message and "out" not in message.split("\n", 1)[1]


def test_stdout_is_shown_when_stderr_says_nothing():
    with pytest.raises(CommandFailed, match="exited 2:\n  why on stdout"):
        run(["sh", "-c", "echo why on stdout; exit 2"])


def test_accepted_statuses_and_no_check():
    assert run(["sh", "-c", "exit 15"], ok=(0, 15)).returncode == 15
    assert run(["false"], check=False).returncode == 1
    assert run(["cat"], input=b"in").stdout == b"in"


def test_a_missing_tool_and_a_hung_command_are_errors():
    with pytest.raises(TestbedError, match="no-such-tool-here: not installed"):
        run(["no-such-tool-here"])
    with pytest.raises(TestbedError, match="`sleep 5`: no answer after 0.2 s"):
        run(["sleep", "5"], timeout=0.2)


def test_a_vm_command_is_named_without_the_ssh_around_it():
    with pytest.raises(CommandFailed) as err:
        ssh(["env"], ["sh", "-c", "echo gone >&2; exit 255"], where="vm-6.1")
    assert str(err.value) == "vm-6.1: `sh -c echo gone >&2; exit 255` exited 255:\n  gone"
    assert ssh(["env"], ["false"], where="vm-6.1", check=False).returncode == 1


class Container:
    """A container as the docker SDK hands it over, whose execs are local processes: the agent
    runs on this host, its stdout reaches the socket in docker's multiplexed frames. It is
    started with the bare environment docker gives an exec."""

    ids = itertools.count()

    def __init__(self):
        self.id = f"c{next(self.ids)}"
        self.client = self.api = self
        self.procs = []

    def exec_create(self, cid, argv, **kw):
        assert (cid, argv[:2], kw["user"], kw["stdin"]) == (self.id, ["python3", "-c"], "root", True)
        proc = subprocess.Popen([sys.executable, *argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={"PATH": os.environ["PATH"], "GIVEN": "1"})
        self.procs.append(proc)
        return {"Id": proc}

    def exec_start(self, proc, socket):
        ours, theirs = sock.socketpair()

        def inward():
            while data := theirs.recv(65536):
                proc.stdin.write(data)
                proc.stdin.flush()
            proc.stdin.close()

        def outward(stream, kind):
            while data := stream.read1(65536):
                theirs.sendall(struct.pack(">BxxxL", kind, len(data)) + data)
            if kind == 1:
                proc.wait()
                theirs.shutdown(sock.SHUT_WR)
        for target, args in ((inward, ()), (outward, (proc.stdout, 1)), (outward, (proc.stderr, 2))):
            threading.Thread(target=target, args=args, daemon=True).start()
        return ours


@pytest.fixture
def container():
    c = Container()
    yield c
    AGENTS.forget(c)


def test_a_nodes_command_runs_in_its_agent_as_docker_exec_would_and_fails_naming_the_node(container):
    c = container
    assert exec_in(c, ["sh", "-c", "echo fine; echo said >&2"], where="guest0") == Result(0, "fine\n", "said\n")
    # the environment docker gave (not Python's LC_CTYPE), the caller's own, no stdin
    assert exec_in(c, ["sh", "-c", "env | grep -v -e ^PWD= -e ^SHLVL= -e ^_= | sort; read a || echo no stdin"],
                   where="guest0", environment={"X": "set"}).stdout == f"GIVEN=1\nPATH={os.environ['PATH']}\nX=set\nno stdin\n"
    code, out, err = exec_in(c, ["sh", "-c", "echo no >&2; exit 4"], where="guest0", check=False)
    assert (code, out, err) == (4, "", "no\n")
    with pytest.raises(CommandFailed, match="^storage0: `sh -c echo no such VG >&2; exit 5` exited 5:\n  no such VG$"):
        exec_in(c, ["sh", "-c", "echo no such VG >&2; exit 5"], where="storage0")
    assert exec_in(c, ["no-such-tool-here"], where="guest0", check=False)[0] == 127
    assert exec_in(c, ["sh", "-c", "kill -9 $$"], where="guest0", check=False)[0] == 137
    assert exec_in(c, ["true"], where="g", user="no-such-user-here", check=False)[0] == 126
    # a session of its own, as runc gives every exec; its output pipes, as /dev/stdout too
    assert exec_in(c, [sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"],
                   where="g").stdout == "True\n"
    assert exec_in(c, ["sh", "-c", "echo a; echo b > /dev/stdout"], where="g").stdout == "a\nb\n"
    # a background child that keeps the output open does not hold the answer back
    t = time.monotonic()
    assert exec_in(c, ["sh", "-c", "sleep 5 & echo now"], where="guest0").stdout == "now\n"
    assert time.monotonic() - t < 4
    t = time.monotonic()                        # and one that goes on writing is cut off
    assert exec_in(c, ["sh", "-c", "echo now; yes &"], where="g").stdout.startswith("now\n")
    assert time.monotonic() - t < 5
    big = exec_in(c, [sys.executable, "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4096)"], where="g")
    assert big.stdout == (bytes(range(256)) * 4096).decode(errors="replace")
    assert len(c.procs) == 1                    # one agent served every call of this thread
    if os.getuid() == 0:                        # the user's uid, groups, HOME and outputs, as exec --user
        out = exec_in(c, ["sh", "-c", "id -u; id -G; echo $HOME; echo mine > /dev/stdout"], where="g",
                      user="nobody").stdout
        pw = pwd.getpwnam("nobody")
        uid, groups, home, mine = out.split("\n")[:4]
        assert (uid, set(groups.split()), home, mine) == (
            str(pw.pw_uid), set(map(str, os.getgrouplist("nobody", pw.pw_gid))), pw.pw_dir, "mine")


def test_each_thread_has_its_agent_so_a_pre_and_its_post_have_one_parent(container):
    c = container
    parent = [exec_in(c, ["sh", "-c", "echo $PPID"], where="g").stdout for _ in range(2)]
    assert parent[0] == parent[1]               # the plugin takes its parent for its Amanda process
    other = []
    threads = [threading.Thread(target=lambda: other.append(exec_in(c, ["sh", "-c", "sleep 1; echo $PPID"], where="g")))
               for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({r.stdout for r in other} | {parent[0]}) == 3 and len(c.procs) == 3


def test_a_dead_agent_is_replaced_and_one_gone_mid_command_is_named(container):
    c = container
    assert exec_in(c, ["echo", "one"], where="g").stdout == "one\n"
    c.procs[-1].kill()                          # its container restarted
    c.procs[-1].wait()
    deadline = time.monotonic() + 10
    while AGENTS._agents[(c.id, threading.get_ident())].alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exec_in(c, ["echo", "again"], where="g").stdout == "again\n" and len(c.procs) == 2
    threading.Timer(0.5, c.procs[-1].kill).start()
    with pytest.raises(TestbedError, match="^g: `sleep 3`: the testbed's agent in the node ended"):
        exec_in(c, ["sleep", "3"], where="g")


def test_a_throw_away_containers_failure_is_a_command_failure():
    class Client:
        class containers:
            @staticmethod
            def run(image, argv, **kw):
                raise docker.errors.ContainerError(None, 1, argv, image, b"Traceback\nKeyError: x\n")
    with pytest.raises(CommandFailed, match="^janitor: `sh -c true` exited 1:\n  Traceback\n  KeyError: x$"):
        run_container(Client, "img", ["sh", "-c", "true"], where="janitor")


# -- the in-node scripts --------------------------------------------------------------------
NODE_SCRIPTS = sorted(n for n in os.listdir(SCRIPTS) if n.endswith(".py") and n != "prelude.py")


def in_node(text, *args):
    return subprocess.run([sys.executable, "-c", text, *args], capture_output=True, text=True)


def test_every_python_script_is_sent_after_the_one_prelude_and_has_no_sh_of_its_own():
    prelude = open(os.path.join(SCRIPTS, "prelude.py")).read()
    assert NODE_SCRIPTS == ["guest.py", "janitor.py", "storage.py"]
    for name in NODE_SCRIPTS:
        text = script(name)
        assert text.startswith(prelude)
        defined = [n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)]
        assert defined.count("sh") == 1, name
        # bullseye's nodes run Python 3.9
        ast.parse(text, feature_version=(3, 9))
    assert not script("probe-stack.sh").startswith(prelude)     # a shell script goes as it is


def test_the_preludes_sh_fails_naming_the_command_its_status_and_stderr():
    body = script("storage.py").split("# sh(): ")[0]
    proc = in_node(body + "\nsh('sh', '-c', 'echo out; echo bad disk >&2; exit 4')\n")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "`sh -c echo out; echo bad disk >&2; exit 4` exited 4:\n  bad disk"
    proc = in_node(body + "\nprint(sh('sh', '-c', 'echo left; exit 1', check=False).strip())\n"
                          "print(sh('echo', 'x').strip())\n")
    assert (proc.returncode, proc.stdout) == (0, "left\nx\n")


def test_a_script_runs_with_the_prelude_as_a_node_runs_it(tmp_path):
    log = tmp_path / "live" / "log"
    log.parent.mkdir()
    log.write_bytes(b"")
    proc = in_node(script("guest.py"), "check-log", f'{{"log": "{log}"}}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '{"ok": true, "records": 0, "torn_bytes": 0, "why": ""}'


def test_what_was_restored_is_read_for_every_dle_in_one_call(tmp_path):
    """verify()'s one server call: each tree's manifest (the live log left out) and its log's
    check; and its one guest call, reading every manifest."""
    import json
    good, torn = tmp_path / "good", tmp_path / "torn"
    for tree, log in ((good, b"".join(record_of(i) for i in range(3))), (torn, record_of(0) + b"garbage")):
        (tree / "data").mkdir(parents=True)
        (tree / "data" / "f").write_bytes(b"x")
        (tree / "live").mkdir()
        (tree / "live" / "log").write_bytes(log)
    (tmp_path / "none" / "data").mkdir(parents=True)
    trees = {"a": str(good), "b": str(torn), "c": str(tmp_path / "none")}
    proc = in_node(script("guest.py"), "restored", json.dumps({"trees": trees}))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["c"] == {"manifest": "\n", "ok": False, "records": 0, "why": "no live log"}
    sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert seen["a"] == {"manifest": f"{sha}  data/f\n", "ok": True, "records": 3, "torn_bytes": 0, "why": ""}
    assert (seen["b"]["ok"], seen["b"]["records"], seen["b"]["why"]) == (False, 1, "garbage after the last record")
    (tmp_path / "m").write_text("manifest text\n")
    proc = in_node(script("guest.py"), "read", json.dumps({"paths": {"a": str(tmp_path / "m")}}))
    assert json.loads(proc.stdout) == {"a": "manifest text\n"}


def record_of(seq):
    import hashlib
    return f"{seq:016d} {hashlib.sha256(str(seq).encode()).hexdigest()[:40]}\n".encode()


# -- the docker SDK's errors ------------------------------------------------------------------
class Images:
    def __init__(self, error=None):
        self.error = error

    def get(self, tag):
        if self.error:
            raise self.error
        return tag


def test_a_missing_image_is_missing_and_an_engine_that_fails_is_an_error():
    import requests

    from testbed.images import _has

    class Client:
        images = Images(docker.errors.ImageNotFound("No such image: sltb-node:x"))
    assert _has(Client, "sltb-node:x") is False
    Client.images = Images()
    assert _has(Client, "sltb-node:x") is True
    for error in (requests.exceptions.ConnectionError("engine gone"), docker.errors.APIError("500 Server Error")):
        Client.images = Images(error)
        with pytest.raises(type(error)):
            _has(Client, "sltb-node:x")


def test_an_iscsid_the_engine_cannot_say_is_not_started_again():
    from testbed.fixture.iscsid import ensure_iscsid

    class Client:
        class containers:
            @staticmethod
            def get(name):
                raise docker.errors.APIError("500 Server Error")

            @staticmethod
            def run(*a, **kw):
                raise AssertionError("started although the engine did not answer")
    with pytest.raises(docker.errors.APIError):
        ensure_iscsid(Client, "img")


def test_the_command_line_says_an_engine_error_and_exits_1(monkeypatch, capsys):
    from testbed import cli

    def connect(config, steps):
        raise docker.errors.DockerException("Error while fetching server API version: refused")
    monkeypatch.setattr(cli, "connect", connect)
    assert cli.main(["images"]) == 1
    assert capsys.readouterr().err.strip().endswith(
        "testbed: the Docker engine: Error while fetching server API version: refused")


# -- what verify() restores ---------------------------------------------------------------------
def test_a_dle_is_restored_from_its_last_level_0_and_what_came_after_it_in_order():
    from testbed.amanda import Dump
    from testbed.amanda.backup import chain

    def dump(date, level):
        return Dump("h", "d", level, "OK", f"2026-12-0{date} 10:00:00")
    dumps = [dump(4, 1), dump(1, 0), dump(3, 0), dump(2, 1), dump(5, 1)]
    assert [(d.date[9], d.level) for d in chain(dumps)] == [("3", 0), ("4", 1), ("5", 1)]
    assert chain([dump(1, 0), dump(2, 0)]) == [dump(2, 0)]     # a full dump promoted: the newer
    assert chain([dump(2, 1)]) == []                           # nothing to start from


def test_amfetchdump_aborting_on_amandas_own_assertion_is_tried_again_and_nothing_else_is():
    from testbed.amanda import Amanda, Dump
    from testbed.run import CommandFailed

    class Steps:
        def say(self, line):
            pass
    am = Amanda.__new__(Amanda)
    am.tb, am.fetch_retries = type("TB", (), {"steps": Steps()})(), 0
    aborts = iter([CommandFailed(["amfetchdump"], 134, "ERROR:xfer-source-recovery.c:628: assertion", "amanda")] * 2)

    def call():
        err = next(aborts, None)
        if err:
            raise err
        return "restored"
    assert am._retried("amfetchdump TB", 3, call) == "restored" and am.fetch_retries == 2
    with pytest.raises(CommandFailed):      # another failure is no race of Amanda's: at once
        am._retried("amfetchdump TB", 3, lambda: (_ for _ in ()).throw(CommandFailed(["x"], 1, "no", "amanda")))
    assert am.fetch_retries == 2
    d = Dump("h", "d", 1, "1/1 OK", "2026-12-02 14:50:38")
    assert d.ok and d.datestamp == "20261202145038" and not Dump("h", "d", 0, "FAILED", "").ok
