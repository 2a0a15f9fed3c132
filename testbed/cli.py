"""The `testbed` command: the engine, its images, and one live testbed.

Its commands: engine up|down|status|clean, images, and up|down|status|shell NODE|backup for the
live testbed."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys

from . import cache
from .config import Config
from .progress import Steps
from .run import TestbedError


def main(argv=None) -> int:
    try:
        config = Config.from_env()
    except TestbedError as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    p.add_argument("--kernel", default=config.kernel)
    p.add_argument("--suite", default=config.suite)
    p.add_argument("--layout", default=config.layout, choices=("debian", "zmanda"),
                   help="Amanda's: Debian's packages, or rebuilt as Zmanda's RPMs lay it out")
    sub = p.add_subparsers(dest="command", required=True)
    eng = sub.add_parser("engine", help="the Docker engine that holds testbeds")
    eng.add_argument("action", choices=("up", "down", "status", "clean"))
    sub.add_parser("images", help="build (or find cached) images in the engine")
    sub.add_parser("up", help="a live testbed: engine, images, storage hosts, guest, data")
    sub.add_parser("down", help="destroy the live testbed and check that nothing leaked")
    sub.add_parser("status", help="the live testbed's nodes")
    sub.add_parser("backup", help="Amanda on the live testbed: amcheck, amdump while the guest "
                                  "writes, restore, byte-for-byte comparison")
    sh = sub.add_parser("shell", help="a shell on a node of the live testbed")
    sh.add_argument("node")
    args = p.parse_args(argv)
    config = dataclasses.replace(config, kernel=args.kernel, suite=args.suite, layout=args.layout)
    steps = Steps(f"testbed {' '.join(sys.argv[1:] if argv is None else argv)}")
    import docker.errors    # an engine that fails or does not answer is said, not a traceback
    import requests
    try:
        if args.command == "engine":
            return engine_command(args, config, steps)
        if args.command == "images":
            from .images import node
            node(connect(config, steps), config, steps)
            print(steps.summary())
            return 0
        return FIXTURE[args.command](args, config, steps)
    except TestbedError as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
    except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
        print(f"testbed: the Docker engine: {err}", file=sys.stderr)
        return 1


def connect(config: Config, steps):
    """Bring the chosen engine up and return a docker client for it; a VM engine that boots
    gets its node image built natively first."""
    import docker
    from .engine import engine
    from .images import built_first
    eng, _ = engine(config, steps)
    host = eng.up(prepare=built_first(config, steps))
    os.environ["DOCKER_HOST"] = host
    return docker.DockerClient(base_url=host, timeout=600)


def engine_command(args, config: Config, steps) -> int:
    from .engine.vm import VmEngine
    if args.action == "up":
        from .engine import engine
        eng, why = engine(config, steps)
        host = eng.up()
        print(steps.summary())
        print(f"{eng.describe()}\nexport DOCKER_HOST={host}")
        return 0
    vm = VmEngine(config, steps)
    if args.action == "status":
        st = vm.status()
        print(f"vm-{config.kernel}: {st['state']}" + (f" ({st['why']})" if st.get("why") else ""))
        if st["state"] == "running":
            print(f"  qemu pid {st['qemu_pid']}, {st['accel']}, kernel {st['kernel_version']}, "
                  f"DOCKER_HOST={vm.docker_host}")
        return {"running": 0, "down": 3}.get(st["state"], 1)     # as systemctl: 3 = not running
    if args.action == "down":
        vm.down()
        return 0
    if args.action == "clean":
        vm.down()
        shutil.rmtree(cache.root(), ignore_errors=True)
        print(f"removed {cache.root()}")
        return 0
    return 2


def live_path() -> str:
    """The live testbed's journal: written before it is created, removed when it is destroyed."""
    return os.path.join(cache.root(), "run", "testbed.json")


def _live():
    try:
        import json
        with open(live_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        raise TestbedError("no live testbed: run `testbed up` (or `make testbed`)") from None


def fixture_up(args, config: Config, steps) -> int:
    import json

    from .fixture import Testbed, new_prefix
    from .images import node
    from .lifecycle import Lifecycle
    from .fixture.topology import default
    client = connect(config, steps)
    image = node(client, config, steps)
    try:
        old = [Testbed(client, image, default(_live()["prefix"]), steps)]     # destroy first
    except TestbedError:
        old = []
    tb = Testbed(client, image, default(new_prefix()), steps)

    def record():
        os.makedirs(os.path.dirname(live_path()), exist_ok=True)
        with open(live_path(), "w") as f:
            json.dump({"prefix": tb.prefix, "image": image, "docker_host": os.environ["DOCKER_HOST"],
                       "kernel": config.kernel, "suite": config.suite, "layout": config.layout}, f)

    def failed(tb):
        print(f"testbed: set-up failed; destroying {tb.prefix}", file=sys.stderr)

    Lifecycle(tb, first=old, record=record, failed=failed).up()
    print(steps.summary())
    print(f"\ntestbed {tb.prefix} is up:")
    for v in tb.topo.variants:
        print(f"  {v.name:<14} {tb.device(v.name)}")
    print("\n" + shell_hints(tb.topo))
    return 0


def shell_hints(topo) -> str:
    nodes = [*topo.storage_hosts, topo.guest, "amanda"]
    return "shells:  " + "  ".join(f".venv/bin/testbed shell {n}" for n in nodes) + \
           "\ndone:    make testbed-down"


def _client_for(live):
    import docker
    os.environ["DOCKER_HOST"] = live["docker_host"]
    return docker.DockerClient(base_url=live["docker_host"], timeout=600)


def fixture_down(args, config: Config, steps) -> int:
    from .fixture import Testbed
    from .lifecycle import Lifecycle
    from .fixture.topology import default
    live = _live()
    left = Lifecycle(Testbed(_client_for(live), live["image"], default(live["prefix"]), steps)).down()
    os.unlink(live_path())
    leaked = {k: v for k, v in left.items() if v}
    print(steps.summary())
    if leaked:
        print(f"testbed: LEAKED {leaked}", file=sys.stderr)
        return 1
    print(f"testbed {live['prefix']} destroyed; leak check: nothing left")
    return 0


def fixture_status(args, config: Config, steps) -> int:
    live = _live()
    client = _client_for(live)
    from . import LABEL
    print(f"testbed {live['prefix']} (kernel {live['kernel']}, {live['suite']}, Amanda {live.get('layout', 'debian')}, DOCKER_HOST={live['docker_host']})")
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}={live['prefix']}"}):
        print(f"  {c.name:<28} {c.status}")
    return 0


def fixture_shell(args, config: Config, steps) -> int:
    live = _live()
    name = f"{live['prefix']}-{args.node}"
    os.environ["DOCKER_HOST"] = live["docker_host"]
    docker_cli = shutil.which("docker")
    if not docker_cli:
        raise TestbedError("the docker command line is needed for a shell (apt-get install docker.io)")
    os.execvp(docker_cli, [docker_cli, "exec", "-it", name, "bash"])


def fixture_backup(args, config: Config, steps) -> int:
    from .amanda import Amanda
    from .amanda.backup import dump_while_writing, group_skew, table, verify
    from .fixture import Testbed
    from .fixture.topology import default
    live = _live()
    tb = Testbed(_client_for(live), live["image"], default(live["prefix"]), steps)
    am = Amanda(tb, config.logs)
    am.create()
    with steps.step("amcheck") as info:
        code, out = am.amcheck()
        if code != 0:
            raise TestbedError(f"amcheck failed:\n{out[-3000:]}")
        info["how"] = out.strip().splitlines()[-2].strip() if out.strip() else "ok"
    with steps.step("amdump (the guest writes all along)") as info:
        info["how"] = f"{dump_while_writing(am):.0f} s"
    with steps.step("restore with amfetchdump and compare") as info:
        results = verify(am)
        info["how"] = f"{sum(r.ok for r in results)}/{len(results)} DLEs verified"
    print(steps.summary())
    print("\nDLE results (restored from Amanda, compared with the guest's sha256 manifest):")
    print(table(results))
    skew = group_skew(results, tb.topo)
    for name, records in skew.items():
        print(f"  group {name}: its disks' restored logs differ by {records} record(s) "
              f"({'one instant' if records <= 1 else 'NOT one instant'})")
    print("\n" + shell_hints(tb.topo))
    return 0 if all(r.ok for r in results) and all(n <= 1 for n in skew.values()) else 1


FIXTURE = {"backup": fixture_backup, "up": fixture_up, "down": fixture_down, "status": fixture_status, "shell": fixture_shell}
