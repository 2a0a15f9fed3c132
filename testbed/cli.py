"""testbed: `engine up|down|status|clean`, and the fixture's `up|down|status|shell NODE`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from . import cache
from .progress import Steps
from .run import TestbedError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    p.add_argument("--kernel", default=os.environ.get("TESTBED_KERNEL", "6.1"))
    p.add_argument("--suite", default=os.environ.get("TESTBED_SUITE", "bookworm"))
    sub = p.add_subparsers(dest="command", required=True)
    eng = sub.add_parser("engine", help="the Docker engine that holds testbeds")
    eng.add_argument("action", choices=("up", "down", "status", "clean"))
    sub.add_parser("images", help="build (or find cached) images in the engine")
    args = p.parse_args(argv)
    steps = Steps(f"testbed {' '.join(sys.argv[1:] if argv is None else argv)}")
    try:
        if args.command == "engine":
            return engine_command(args, steps)
        if args.command == "images":
            from .images import node
            node(connect(args, steps), args.suite, steps)
            print(steps.summary())
            return 0
    except TestbedError as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    return 2


def connect(args, steps):
    """Bring the chosen engine up and return a docker client for it."""
    import docker
    from .engine import engine
    eng, _ = engine(args.kernel, steps)
    host = eng.up()
    os.environ["DOCKER_HOST"] = host
    return docker.DockerClient(base_url=host, timeout=600)


def engine_command(args, steps) -> int:
    from .engine.vm import VmEngine
    if args.action == "up":
        from .engine import engine
        eng, why = engine(args.kernel, steps)
        host = eng.up()
        print(steps.summary())
        print(f"{eng.describe()}\nexport DOCKER_HOST={host}")
        return 0
    vm = VmEngine(args.kernel, steps)
    if args.action == "status":
        st = vm.status()
        print(f"vm-{args.kernel}: {st['state']}" + (f" ({st['why']})" if st.get("why") else ""))
        if st["state"] == "running":
            print(f"  qemu pid {st['qemu_pid']}, {st['accel']}, kernel {st['kernel_version']}, "
                  f"DOCKER_HOST={vm.docker_host}")
        return 0 if st["state"] in ("running", "down") else 1
    if args.action == "down":
        vm.down()
        return 0
    if args.action == "clean":
        vm.down()
        shutil.rmtree(cache.root(), ignore_errors=True)
        print(f"removed {cache.root()}")
        return 0
    return 2
