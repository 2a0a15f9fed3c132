"""The testbed's agent in a node: it runs each argv it is sent and answers with what the command
did, so that one docker exec serves a node's many commands (an exec costs the emulated guest
about 1 s of CPU under TCG, measured). run.py starts it and talks to it; it needs only Python.

Frames both ways: 4 bytes of length (big-endian), then JSON. A request: {"argv", "user", "env"};
an answer: {"status", "stdout", "stderr"}, the two outputs base64. A command runs as docker exec
runs it: stdin /dev/null, its own session, the environment docker gave this agent, HOME and the
groups of its user, its outputs pipes that user owns (amreport -f /dev/stdout opens them); they
are read until it exits (a background child that keeps them open does not hold the answer back).
"""

import base64
import json
import os
import pwd
import selectors
import struct
import subprocess
import sys
import time


def environment():
    """What docker gave this process: os.environ has Python's own additions (LC_CTYPE)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            pairs = [p.split(b"=", 1) for p in f.read().split(b"\0") if b"=" in p]
        return {k.decode(): v.decode() for k, v in pairs}
    except OSError:
        return dict(os.environ)


BASE = environment()


def receive():
    head = sys.stdin.buffer.read(4)
    if len(head) < 4:
        return None
    return json.loads(sys.stdin.buffer.read(struct.unpack(">I", head)[0]))


def send(answer):
    data = json.dumps(answer).encode()
    sys.stdout.buffer.write(struct.pack(">I", len(data)) + data)
    sys.stdout.buffer.flush()


def as_user(name):
    """The environment and the switch to user name, as docker exec's --user does it."""
    env = dict(BASE)
    if name in ("root", "0", ""):
        return env, None
    pw = pwd.getpwnam(name)
    env["HOME"] = pw.pw_dir

    def switch():
        for fd in (1, 2):       # its own outputs, as runc gives them: /dev/stdout opens as that user
            os.fchown(fd, pw.pw_uid, pw.pw_gid)
        os.initgroups(pw.pw_name, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return env, switch


def outputs(proc):
    """stdout and stderr until the command exits, then what they still hold."""
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    got = {out: bytearray(), err: bytearray()}
    exit_fd = os.pidfd_open(proc.pid)
    with selectors.DefaultSelector() as sel:
        for fd in (*got, exit_fd):
            sel.register(fd, selectors.EVENT_READ)
        exited = None
        while sel.get_map():
            events = sel.select(0 if exited else None)
            # after its exit, what the pipes hold; a background child that goes on writing
            # is cut off after a second
            if not events or (exited and time.monotonic() - exited > 1):
                break
            for key, _ in events:
                if key.fd == exit_fd:
                    exited = time.monotonic()
                    sel.unregister(exit_fd)
                    continue
                data = os.read(key.fd, 65536)
                if data:
                    got[key.fd] += data
                else:
                    sel.unregister(key.fd)
    os.close(exit_fd)
    proc.stdout.close()
    proc.stderr.close()
    return bytes(got[out]), bytes(got[err])


def run(argv, user, extra):
    try:
        env, switch = as_user(user)
        env.update(extra or {})
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, preexec_fn=switch,
                                start_new_session=True)
    except OSError as e:         # as docker exec says it: 126 not executable, 127 not found
        return answer(127 if isinstance(e, FileNotFoundError) else 126, b"",
                      f"exec {argv[0]}: {e.strerror}\n".encode())
    except Exception as e:       # no such user, a bad environment: the command never ran
        return answer(126, b"", f"exec {argv[:1]}: {e}\n".encode())
    out, err = outputs(proc)
    status = proc.wait()
    return answer(128 - status if status < 0 else status, out, err)    # a signal, as a shell says


def answer(status, out, err):
    return {"status": status, "stdout": base64.b64encode(out).decode(),
            "stderr": base64.b64encode(err).decode()}


def main():
    while True:
        request = receive()
        if request is None:
            return
        send(run(request["argv"], request.get("user") or "root", request.get("env")))


if __name__ == "__main__":     # run.py sends this file to a node; on this host it is only read
    main()
