"""`make bench`: the performance figures on the real fixture, each next to its target.

(a) plugin overhead: a set-up and tear-down by script-snaplayers against the same argv run bare
    by a shell script, interleaved, per layer combination; (b) startup; (c) testbed timings,
    cold and warm; (d) amdump wall time for 1, 4 and 8 DLEs on one storage host; (e) tar from
    the snapshot mount against tar of the same data in a plain directory.
Medians of interleaved rounds, because this machine is shared and noisy. Writes
tests/bench/results.json and prints the table the README's performance section shows.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import docker

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import startup  # noqa: E402

from testbed.amanda import Amanda, ok_dumps  # noqa: E402
from testbed.amanda.backup import dump_while_writing, verify  # noqa: E402
from testbed.config import Config  # noqa: E402
from testbed.engine.vm import VmEngine  # noqa: E402
from testbed.fixture import Testbed, new_prefix, plugin_names  # noqa: E402
from testbed.images import node  # noqa: E402
from testbed.lifecycle import Lifecycle  # noqa: E402
from testbed.progress import Steps  # noqa: E402
from testbed.fixture.topology import MOUNT_BASE, default, scaling  # noqa: E402

OUT = os.path.join(HERE, "results.json")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PLUGIN = "/usr/lib/amanda/application/script-snaplayers"
BIN = os.path.dirname(sys.executable)
# runs argv lists in order inside a node and prints the wall time: no docker exec in the figure
TIMER = ("import json, subprocess, sys, time\n"
         "t = time.perf_counter()\n"
         "for argv in json.loads(sys.argv[1]):\n"
         "    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)\n"
         "print(time.perf_counter() - t)\n")


class Figures:
    def __init__(self):
        self.rows = []

    def add(self, group, what, value, unit, target=None, better="lower", note=""):
        ok = None if target is None else (value <= target if better == "lower" else value >= target)
        self.rows.append({"group": group, "what": what, "value": round(value, 4), "unit": unit,
                          "target": target, "ok": ok, "note": note})
        shown = f"{value:.3f}" if unit in ("ratio", "x") else f"{value:.1f}"
        print(f"bench: {group} {what}: {shown} {unit}" + (f" (target {target})" if target else ""),
              file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = [f"| {'figure':<92} | {'measured':>10} | {'target':>8} | verdict |",
                 f"|{'-' * 94}|{'-' * 12}|{'-' * 10}|---------|"]
        for r in self.rows:
            v = f"{r['value']:.2f} {r['unit']}" if r["unit"] in ("ratio", "x") else f"{r['value']:.1f} {r['unit']}"
            t = "" if r["target"] is None else f"{'<=' if r['ok'] is not None else ''}{r['target']}"
            verdict = {None: "", True: "ok", False: "MISSED"}[r["ok"]]
            lines.append(f"| {r['group'] + ': ' + r['what']:<92} | {v:>10} | {t:>8} | {verdict:<7} |")
        return "\n".join(lines)


def timed(fn):
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def in_node(tb, node, argvs, user="root") -> float:
    return float(tb.exec(node, ["python3", "-c", TIMER, json.dumps(argvs)], user=user).strip())


# -- (c) testbed timings ----------------------------------------------------------------------
def cold_engine(fig: Figures, kernel: str) -> None:
    """A cold engine and cold images: everything made again in an empty cache."""
    tmp = tempfile.mkdtemp(prefix="sltb-cold-")
    env = {**os.environ, "XDG_CACHE_HOME": tmp}
    env.pop("DOCKER_HOST", None)
    try:
        secs, _ = timed(lambda: subprocess.run([f"{BIN}/testbed", "--kernel", kernel, "engine", "up"],
                                               env=env, check=True, stdout=subprocess.DEVNULL))
        fig.add("testbed", "engine up, cold (kernel, root disk, boot)", secs, "s", 120)
        secs, _ = timed(lambda: subprocess.run([f"{BIN}/testbed", "--kernel", kernel, "images"],
                                               env=env, check=True, stdout=subprocess.DEVNULL))
        fig.add("testbed", "images, cold (base by mmdebstrap + import, node)", secs, "s", 120)
    finally:
        subprocess.run([f"{BIN}/testbed", "--kernel", kernel, "engine", "down"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def warm_engine(fig: Figures, eng: VmEngine, config: Config):
    eng.up()
    eng.down()
    secs, host = timed(eng.up)
    client = docker.DockerClient(base_url=host, timeout=900)
    client.ping()
    fig.add("testbed", "engine up, warm (boot until docker answers)", secs, "s", 60)
    os.environ["DOCKER_HOST"] = host
    secs, image = timed(lambda: node(client, config, Steps("images")))
    fig.add("testbed", "images, warm (cached)", secs, "s", 5)
    return client, image


# -- where the end-to-end time goes ----------------------------------------------------------
def profile(fig: Figures, am) -> None:
    """From the logs of that run: Amanda's estimate and dump phases (its amdump log), and the
    plugin's share (its own debug logs: each call's wall time, and the time in commands)."""
    tb = am.tb
    log = tb.exec("amanda", ["sh", "-c", "cat $(ls -t /srv/amanda/TB/state/log/amdump.* | head -1)"])
    last = {}
    for line in log.splitlines():       # "planner: time 12.3: ...", "driver: result time 45.6 ..."
        parts = line.split()
        if parts and parts[0] in ("planner:", "driver:") and "time" in parts[1:3]:
            at = parts.index("time", 1) + 1
            try:
                last[parts[0].rstrip(":")] = max(last.get(parts[0].rstrip(":"), 0.0), float(parts[at].rstrip(":")))
            except (IndexError, ValueError):
                pass
    planner, driver = last.get("planner", 0.0), last.get("driver", 0.0)
    fig.add("profile", "amdump: planner (estimates: a set-up, tar estimate, tear-down per DLE)", planner, "s")
    fig.add("profile", "amdump: driver after the planner (dumps, taper)", max(driver - planner, 0.0), "s")
    calls = {}
    for path in tb.exec("storage0", ["sh", "-c", "ls /var/log/amanda/snaplayers/*.debug"]).split():
        text = tb.exec("storage0", ["cat", path]).splitlines()
        if len(text) < 2:
            continue
        command = text[0].split("snaplayers: ", 1)[-1].split()[0]
        wall, in_commands, n = call_times(text)
        c = calls.setdefault(command, [0, 0.0, 0.0, 0])
        c[0] += 1
        c[1] += wall
        c[2] += in_commands
        c[3] += n
    for command, (n, wall, cmds, argv) in sorted(calls.items()):
        fig.add("profile", f"plugin {command}: {n} calls, {argv} commands; in commands {cmds:.1f} s of",
                wall, "s", note=f"{cmds / wall if wall else 0:.0%} of the plugin's time is its commands")


# -- (a) plugin overhead --------------------------------------------------------------------
def plugin_cycle(tb, variant):
    base = [PLUGIN, "--execute-where", "client", "--config", "BENCH", "--host", "storage0",
            "--disk", variant, "--device", tb.device(variant), "--mount-base", MOUNT_BASE,
            "--log-dir", f"/tmp/bench-log/{variant}"]
    return [[base[0], "PRE-DLE-BACKUP", *base[1:]], [base[0], "POST-DLE-BACKUP", *base[1:]]]


def bare_script(tb, variant) -> str:
    """The argv the plugin ran for one cycle (from its own log), as a shell script, with the
    mount point's mkdir and rmdir the plugin does itself."""
    tb.exec("storage0", ["rm", "-rf", f"/tmp/bench-log/{variant}"])
    for argv in plugin_cycle(tb, variant):
        tb.exec("storage0", argv, user="backup")
    log = tb.exec("storage0", ["sh", "-c", f"cat /tmp/bench-log/{variant}/*.debug"])
    lines = []
    for line in log.splitlines():
        if " + " not in line:
            continue
        cmd = line.split(" + ", 1)[1]
        argv = shlex.split(cmd)
        tool = os.path.basename(argv[2] if argv[:2] == ["/usr/bin/sudo", "-n"] else argv[0])
        if tool == "mount":
            lines.append(f"mkdir -p {shlex.quote(argv[-1])}")
        lines.append(cmd)
        if tool == "umount":
            lines.append(f"rmdir {shlex.quote(argv[-1])}")
    return "\n".join(lines) + "\n"


def overhead(fig: Figures, tb) -> None:
    for v in tb.topo.variants:
        script = bare_script(tb, v.name)
        path = f"/tmp/bare-{v.name}.sh"
        tb.exec("storage0", ["sh", "-c", f"cat > {path} <<'EOF'\n{script}EOF\nchmod 755 {path}"])
        plugin, bare = [], []
        for i in range(ROUNDS):
            plugin.append(in_node(tb, "storage0", plugin_cycle(tb, v.name), user="backup"))
            bare.append(in_node(tb, "storage0", [["sh", path]], user="backup"))
            print(f"\rbench: overhead {v.name} round {i + 1}/{ROUNDS}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        left = tb.exec("storage0", ["sh", "-c", "dmsetup ls; cat /proc/mdstat; lvs --noheadings -o lv_name"])
        assert not [n for n in plugin_names(tb.client, tb.image) if n in left], left
        p, b = statistics.median(plugin), statistics.median(bare)
        n = script.count("\n")
        split = breakdown(tb, v.name, plugin[-1])
        kinds = ",".join(t.split("=")[0] for t in tb.device(v.name).rsplit("/", 1)[-1].split(","))
        fig.add("plugin", f"set-up + tear-down of {kinds} ({n} commands): plugin / bare argv", p / b, "ratio", 1.1,
                note=f"plugin {p:.2f} s, bare {b:.2f} s, median of {ROUNDS}; last plugin cycle: {split}")


def call_times(lines):
    """One plugin call's debug log: (seconds from its first to its last line, seconds in the
    commands it ran, how many it ran)."""
    first, last = (time.mktime(time.strptime(ln[:19], "%Y-%m-%d %H:%M:%S")) + float(ln[19:23])
                   for ln in (lines[0], lines[-1]))
    in_commands = sum(float(ln.rsplit(" in ", 1)[1].rstrip("s")) for ln in lines if "snaplayers.run:   exit " in ln)
    return last - first, in_commands, sum(1 for ln in lines if "snaplayers.run: + " in ln)


def breakdown(tb, variant, wall) -> str:
    """The last cycle's two calls, from their own logs: time in commands, in Python between
    them, and before the first log line (interpreter start and imports) plus exit."""
    names = tb.exec("storage0", ["sh", "-c", f"ls /tmp/bench-log/{variant}/*.debug | sort | tail -2"]).split()
    commands = inside = 0.0
    for path in names:
        wall_inside, cmds, _ = call_times(tb.exec("storage0", ["cat", path]).splitlines())
        commands += cmds
        inside += wall_inside - cmds
    return (f"wall {wall:.2f} s = commands {commands:.2f} s + Python between them {inside:.2f} s "
            f"+ start-up, imports and exit of 2 calls {wall - commands - inside:.2f} s")


# -- (e) throughput ---------------------------------------------------------------------------
def throughput(fig: Figures, tb, variant="md-part-ext4") -> None:
    """tar of the snapshot mount against tar of a plain copy of the same data, cold caches."""
    mnt = tb.mountpoint(variant)
    tb.exec("guest0", ["sh", "-c", f"dd if=/dev/urandom of={mnt}/bench.bin bs=1M count=64 conv=fsync status=none"])
    device = tb.device(variant)
    plain = f"/srv/{tb.prefix}/plain"
    pre, post = plugin_cycle(tb, variant)
    try:
        tb.exec("storage0", pre, user="backup")
        tb.exec("storage0", ["sh", "-c", f"rm -rf {plain} && mkdir -p {plain} && cp -a {device}/. {plain}/"])
        size = int(tb.exec("storage0", ["du", "-sb", plain]).split()[0])
        snap, copy = [], []
        for i in range(ROUNDS):
            for where, out in ((device, snap), (plain, copy)):
                tb.exec("storage0", ["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"])
                out.append(in_node(tb, "storage0", [["sh", "-c", f"tar -cf - -C {where} . | cat > /dev/null"]]))
        s, c = statistics.median(snap), statistics.median(copy)
        fig.add("throughput", f"tar of {size >> 20} MiB: snapshot mount / plain directory (time)", s / c, "ratio",
                note=f"snapshot {size / s / 1e6:.1f} MB/s, plain {size / c / 1e6:.1f} MB/s, median of {ROUNDS}")
    finally:
        tb.exec("storage0", post, user="backup", check=False)
        tb.exec("storage0", ["rm", "-rf", plain])
        tb.exec("guest0", ["rm", "-f", f"{mnt}/bench.bin"])


# -- (d) scaling with DLEs --------------------------------------------------------------------
def scaling_run(fig: Figures, client, image, steps) -> dict:
    life = Lifecycle(Testbed(client, image, scaling(new_prefix()), steps))
    try:
        secs, tb = timed(life.up)
        fig.add("testbed", "fixture build with 8 md DLEs (warm)", secs, "s")
        am = Amanda(tb)
        am.create()
        names = [v.name for v in tb.topo.variants]
        walls = {}
        for n in (1, 4, 8):
            config = f"SCALE{n}"
            am.write_config(config, am.disklist(only=names[:n]))
            code, secs = am.amdump(config)
            ok = ok_dumps(am.dumps(config))
            assert code == 0 and sorted(ok) == sorted(names[:n]), am.report(config)[-3000:]
            walls[n] = secs
            fig.add("scaling", f"amdump of {n} DLE(s) on one host, inparallel 4", secs, "s")
        fig.add("scaling", "amdump 8 DLEs / 1 DLE", walls[8] / walls[1], "x", 3)
        return walls
    finally:
        life.down()


def main() -> int:
    # the figures are bookworm's with Debian's Amanda, whatever TESTBED_SUITE and _LAYOUT say
    config = Config.from_env(suite="bookworm", layout="debian")
    kernel = config.kernel
    steps = Steps("bench")
    fig = Figures()
    eng = VmEngine(config, steps)
    # (b) startup, on this machine (no emulation: what a real backup client sees)
    exes = [f"{BIN}/script-snaplayers", os.path.join(os.path.dirname(HERE), "..", "dist", "script-snaplayers")]
    med = startup.main([os.path.normpath(e) for e in exes], rounds=40)
    for name, secs in med.items():
        if "floor" not in name:
            label = name.replace(f"{BIN}/", "console script ").replace(os.path.normpath(exes[1]), "one-file plugin")
            fig.add("startup", label, secs * 1000, "ms", 50)
    # (c) testbed: cold (own empty cache), then warm
    if os.environ.get("BENCH_COLD", "1") == "1":
        eng.down()
        cold_engine(fig, kernel)
    client, image = warm_engine(fig, eng, config)
    # the four variants the targets were set for: the others add layers, not a new kind of cost
    four = default(new_prefix(), ["md-part-ext4", "md-xfs", "part-xfs", "lv-ext4"])
    life = Lifecycle(Testbed(client, image, four, steps))
    left = {}
    try:
        secs, tb = timed(life.up)
        fig.add("testbed", "fixture build, 4 variants (warm)", secs, "s", 60)
        t0 = time.monotonic()
        am = Amanda(tb)
        secs, _ = timed(am.create)
        fig.add("end to end", "Amanda server node and configuration", secs, "s")
        secs, (code, out) = timed(am.amcheck)
        assert code == 0, out
        fig.add("end to end", "amcheck of 4 DLEs", secs, "s")
        dump = dump_while_writing(am)
        fig.add("end to end", "amdump of 4 DLEs while the guest writes", dump, "s")
        secs, results = timed(lambda: verify(am))
        assert all(r.ok for r in results)
        fig.add("end to end", "restore (amfetchdump) and compare 4 DLEs", secs, "s")
        fig.add("end to end", "total after the fixture: Amanda set-up, amcheck, amdump, verified restore",
                time.monotonic() - t0, "s", 180)
        profile(fig, am)
        overhead(fig, tb)
        throughput(fig, tb)
    finally:
        left = life.down()
    scaling_run(fig, client, image, steps)
    st = eng.status()
    machine = {"cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                                          / 2 ** 30), "python": platform.python_version(),
               "engine": f"vm, kernel {st.get('kernel_version', kernel)}, {st.get('accel')}",
               "rounds": ROUNDS, "leaked": {k: v for k, v in left.items() if v}}
    with open(OUT, "w") as f:
        json.dump({"machine": machine, "figures": fig.rows}, f, indent=1)
    print(steps.summary(), file=sys.stderr)
    print(fig.table())
    print(f"\nmachine: {machine}\nwritten: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
