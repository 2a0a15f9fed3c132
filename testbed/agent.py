"""The testbed's agent in a node: it runs each argv it is sent and answers with what the command
did, so that one docker exec serves a node's many commands (an exec costs the emulated guest
about 1.3 s of CPU under TCG, measured). run.py starts it and talks to it; it needs only Python.

Frames both ways: 4 bytes of length (big-endian), then JSON. A request: {"argv", "user", "env"};
an answer: {"status", "stdout", "stderr"}, the two outputs base64. A command runs as docker exec
would run it: stdin /dev/null, the container's environment, HOME of its user, that user's groups.
"""

import base64
import json
import os
import pwd
import struct
import subprocess
import sys
import tempfile

BASE = dict(os.environ)


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
        os.initgroups(pw.pw_name, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return env, switch


def run(argv, user, extra):
    env, switch = as_user(user)
    env.update(extra or {})
    # files, not pipes: a command's background child that keeps its output open must not
    # keep its answer waiting
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            status = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                     preexec_fn=switch)
        except OSError as e:         # as docker exec says it: 126 not executable, 127 not found
            status = 127 if isinstance(e, FileNotFoundError) else 126
            err.write(f"exec {argv[0]}: {e.strerror}\n".encode())
        status = 128 - status if status < 0 else status     # killed by a signal, as a shell says
        out.seek(0)
        err.seek(0)
        return {"status": status, "stdout": base64.b64encode(out.read()).decode(),
                "stderr": base64.b64encode(err.read()).decode()}


def main():
    while True:
        request = receive()
        if request is None:
            return
        send(run(request["argv"], request.get("user") or "root", request.get("env")))


if __name__ == "__main__":     # run.py sends this file to a node; on this host it is only read
    main()
