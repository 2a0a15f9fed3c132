"""Testbed timings against their targets: warm engine boot, warm fixture build, warm end to end.
Writes tests/bench/results.json and prints a table. Run by `make bench`.

Warm means every cache is filled (kernel, root disk, images): the first `up` of a clone is cold.
"""

import json
import os
import platform
import sys
import time

import docker

from testbed.amanda import Amanda
from testbed.backup import dump_while_writing, verify
from testbed.engine.vm import VmEngine
from testbed.fixture import Testbed, new_prefix
from testbed.images import node
from testbed.progress import Steps
from testbed.topology import default

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")


def main() -> int:
    kernel = os.environ.get("TESTBED_KERNEL", "6.1")
    steps = Steps("bench")
    eng = VmEngine(kernel, steps)
    figures = {}
    # cold only if nothing is cached yet; then always measure a warm boot
    t = time.monotonic()
    host = eng.up()
    figures["engine up (as found)"] = time.monotonic() - t
    client = docker.DockerClient(base_url=host, timeout=900)
    t = time.monotonic()
    image = node(client, "bookworm", steps)
    figures["images (as found)"] = time.monotonic() - t
    eng.down()
    t = time.monotonic()
    host = eng.up()
    client = docker.DockerClient(base_url=host, timeout=900)
    client.ping()
    figures["warm engine up until docker answers"] = time.monotonic() - t
    os.environ["DOCKER_HOST"] = host
    tb = Testbed(client, image, default(new_prefix()), steps)
    try:
        t = time.monotonic()
        tb.create()
        tb.converge()
        tb.verify()
        figures["warm fixture build"] = time.monotonic() - t
        am = Amanda(tb)
        am.create()
        code, out = am.amcheck()
        assert code == 0, out
        dump_while_writing(am)
        results = verify(am)
        assert all(r.ok for r in results)
        figures["warm end to end (fixture, amcheck, amdump, verified restore)"] = time.monotonic() - t
    finally:
        left = tb.destroy()
    targets = {"warm engine up until docker answers": 60, "warm fixture build": 60,
               "warm end to end (fixture, amcheck, amdump, verified restore)": 180}
    st = eng.status()
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "engine": f"vm {kernel} under {st.get('accel')}", "leaked": {k: v for k, v in left.items() if v}}
    with open(OUT, "w") as f:
        json.dump({"machine": machine, "seconds": figures, "targets": targets}, f, indent=1)
    print(steps.summary(), file=sys.stderr)
    print(f"{'what':<64} {'seconds':>8} {'target':>7}")
    for name, secs in figures.items():
        target = targets.get(name)
        verdict = "" if target is None else ("ok" if secs <= target else "MISSED")
        print(f"{name:<64} {secs:8.1f} {target or '':>7} {verdict}")
    print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
