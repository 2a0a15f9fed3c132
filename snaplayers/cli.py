"""snaplayers: operator commands (plan, status, cleanup, discover, install, sudoers, policy)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time

from . import __version__, run
from .errors import BadInput, SnaplayersError, SnapshotInvalid

APPLICATION_DIRS = ("/usr/lib/amanda/application",        # Debian, Ubuntu
                    "/usr/libexec/amanda/application")    # Zmanda RPMs, Fedora, RHEL


class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, like every other rejection
        raise BadInput(message)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="snaplayers", description=__doc__,
               epilog="script-snaplayers --help documents the Amanda plugin: its commands, the "
                      "device grammar and every property with its default. The packages install "
                      "both as man pages: snaplayers(8) and script-snaplayers(8).")
    p.add_argument("--version", action="version", version=f"snaplayers {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    plan = sub.add_parser("plan", help="print every command a set-up and tear-down would run")
    plan.add_argument("--device", required=True, help="the disklist entry's device field")
    plan.add_argument("--mount-base", help="the mount-base property (default: the device's)")
    plan.add_argument("--snap-suffix", default=None, help="the snap-suffix property")
    plan.add_argument("--size", default=None, help="the size property")
    plan.add_argument("--fstype", default="ext4", help="filesystem to assume on the top device")
    plan.add_argument("--thin", action="store_true", help="assume the origin is a thin LV")
    plan.add_argument("--config", help="Amanda's config, as its calls give it (names the stack)")
    plan.add_argument("--host", help="the disklist entry's host, as Amanda's calls give it")
    plan.add_argument("--disk", help="the disklist entry's disk name (default: the device)")

    for name, text in (("status", "list recorded stacks and which of their parts still exist"),
                       ("cleanup", "tear down leftover stacks")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--state-dir", default=None, help="the state-dir property")
        s.add_argument("--sudo", default="auto", choices=("auto", "yes", "no"),
                       help="auto: through sudo and the helper unless root, and as root only "
                            "what the installed helper admits; no: as root, whatever the "
                            "journals say (trusts whoever can write the state dir)")
        if name == "cleanup":
            s.add_argument("--disk", help="only this DLE's stack")
            s.add_argument("--force", action="store_true",
                           help="also a stack whose Amanda process still runs (that dump "
                                "then fails at its POST-DLE-BACKUP)")
        else:
            s.add_argument("--json", action="store_true",
                           help="one JSON object: the forms of every name snaplayers makes, and "
                                "each stack with the names of what it holds")

    dis = sub.add_parser("discover", help="as root on the storage host: a disklist line for every "
                                          "filesystem inside its LVs, found read-only through the "
                                          "plugin's own layers; what it skipped, and why, as comments")
    dis.add_argument("--vg", action="append", default=[],
                     help="only this volume group (again for more; default: every VG)")
    dis.add_argument("--host", help="the disklist's host name (default: this host's name)")
    dis.add_argument("--dumptype", default="snaplayers-amgtar",
                     help="the dumptype of every line (default: snaplayers-amgtar, as in the "
                          "shipped examples)")
    dis.add_argument("--format", default="disklist", choices=("disklist", "json"))
    dis.add_argument("--spindle", default="auto", choices=("auto", "none"),
                     help="auto: LVs on the same physical disk share a spindle, so Amanda never "
                          "dumps two of them at once; none: -1 (storage not bound by spindles)")
    dis.add_argument("--maxdumps", default="1",
                     help="Amanda's maxdumps: how many snapshots of the largest LVs each VG must "
                          "hold at once (default: 1, Amanda's)")
    dis.add_argument("--mount-base", help="the mount-base property (default: the installed "
                                          "helper's)")
    dis.add_argument("--size", default=None, help="the probes' snapshot size (size property)")
    dis.add_argument("--key-dir", default=None,
                     help="where luks=<key> finds <key>.key (default: the installed helper's)")
    dis.add_argument("--state-dir", default=None,
                     help="root's directory for the probes' journals while they run (default: "
                          "/var/lib/snaplayers/discover)")

    ins = sub.add_parser("install", help="as root: the plugin into Amanda's application "
                                         "directory, the privileged helper with its policy, the "
                                         "root-owned mount base and the one sudoers line")
    ins.add_argument("--user", required=True, help="the Amanda user (Debian: backup)")
    ins.add_argument("--mount-base", required=True,
                     help="the root-owned directory to make, the plugin's mount-base property")
    ins.add_argument("--snap-suffix", default=None, help="the plugin's snap-suffix property")
    ins.add_argument("--key-dir", default=None, help="where luks=<key> finds <key>.key")
    ins.add_argument("--application-dir", help="Amanda's application directory (default: the "
                                               "first that exists of "
                                               + ", ".join(APPLICATION_DIRS) + ")")
    ins.add_argument("--name", default="script-snaplayers",
                     help="the plugin's file name there (amanda.conf's plugin \"NAME\")")
    ins.add_argument("--no-plugin", action="store_true",
                     help="leave the plugin alone (a package put it in place): only the helper, "
                          "the mount base and the sudoers line")
    ins.add_argument("--helper", default=None, choices=run.HELPERS,
                     help="where to put the helper (the plugin looks only there; default: "
                          f"{run.HELPERS[-1]})")
    ins.add_argument("--sudoers", default=None, help="the sudoers drop-in to write")

    su = sub.add_parser("sudoers", help="print the sudoers line `install` writes")
    su.add_argument("--user", required=True, help="the Amanda user")
    su.add_argument("--helper", default=None, help="the helper's path (default: where it is)")

    pol = sub.add_parser("policy", help="print every argv the helper would admit, as patterns")
    pol.add_argument("--mount-base", required=True, help="the mount-base property")
    pol.add_argument("--snap-suffix", default=None, help="the snap-suffix property")
    pol.add_argument("--key-dir", default=None, help="the key-dir property")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except SnaplayersError as err:
        sys.stderr.write(f"snaplayers: {' '.join(str(err).split())}\n")
        return err.exit_status


def cmd_plan(args) -> int:
    from .device import parse
    from .props import Settings
    from .simulate import SimulatedSystem, plan

    spec = parse(args.device, args.mount_base)
    with tempfile.TemporaryDirectory(prefix="snaplayers-plan.") as tmp:
        extra = {k: v for k, v in (("snap_suffix", args.snap_suffix), ("size", args.size)) if v}
        settings = Settings(mount_base=spec.mount_base, state_dir=tmp, log_dir=tmp, **extra)
        settings.check_device(spec)
        system = SimulatedSystem(fstype=args.fstype, thin=args.thin)
        setup, teardown = plan(spec, settings, system, args.config, args.host,
                               args.disk or args.device).lines()
    print("# set-up (as root; the Amanda user's go through sudo -n and the helper)")
    for line in setup:
        print(line)
    print("# tear-down")
    for line in teardown:
        print(line)
    return 0


def _journals(args):
    from .journal import all_journals
    return all_journals(_state_dir(args))


def _state_dir(args) -> str:
    from .props import DEFAULT_STATE_DIR
    return args.state_dir or DEFAULT_STATE_DIR


def _stack_for(data, sudo: str, state_dir: str):
    """The stack a journal records, named by the directory it was listed in (never by what the
    journal says of itself: its state_dir or a dle_id with a '/')."""
    from .layers import Context, Host
    from .privilege import installed_policy
    from .props import Settings
    from .run import Runner
    from .stack import Stack
    if not isinstance(data.get("dle_id"), str) or not re.fullmatch(r"[0-9a-f]{12}", data["dle_id"]):
        raise SnaplayersError(f"journal with dle_id {data.get('dle_id')!r} is not snaplayers'")
    try:
        settings = Settings(**{**data["settings"], "sudo": sudo, "state_dir": state_dir})
    except (TypeError, KeyError) as err:
        raise SnaplayersError(f"journal of {data.get('disk')!r} has settings snaplayers did not "
                              f"write ({err})") from err
    # the journals are the Amanda user's to write: root acts on them only within the installed
    # helper's policy, so a forged journal makes root do nothing that user could not
    policy = installed_policy(run.helper_path()) if sudo == "auto" and os.geteuid() == 0 else None
    ctx = Context(Runner(sudo, policy=policy), Host(), settings, data["dle_id"])
    return Stack(ctx, data["config"], data["host"], data["disk"])


def cmd_status(args) -> int:
    found = _journals(args)
    if args.json:
        from .privilege import installed_policy
        helper = run.helper_path()
        policy = installed_policy(helper)
        print(json.dumps({"version": __version__, "helper": helper if policy else None,
                          "names": names_in_force(policy or {}),
                          "stacks": [_stack_status(dle, data, args.sudo, _state_dir(args))
                                     for dle, data in found]},
                         indent=1))
        return 0
    if not found:
        print("no stacks recorded")
        return 0
    for dle, data in found:
        if data is None:
            print(f"{dle}: unreadable journal")
            continue
        try:
            status = _live_status(data, args.sudo, _state_dir(args))
        except SnaplayersError as err:     # one bad journal hides none of the others
            print(f"{dle}: unreadable journal: {' '.join(str(err).split())}")
            continue
        age = time.time() - data["started"]
        owner = data.get("owner") or {}
        alive = {True: "runs", False: "is gone: a leftover", None: "unknown"}[status["owner_alive"]]
        print(f"{data['config'] or '-'} {data['host'] or '-'} {data['disk']}: {data['state']}, "
              f"set up {age:.0f} s ago by pid {data['pid']}, device {data['device']}; "
              f"Amanda process {owner.get('pid', '?')} {alive}")
        for layer in status["live"]:
            shared = f", shared with {', '.join(layer['shared_with'])}" if layer["shared_with"] else ""
            print(f"  {layer['token']:<24} {layer['describe'] or '-':<48} "
                  f"{'present' if layer['present'] else 'gone'}{shared}")
    return 0


def _live_status(data, sudo: str, state_dir: str) -> dict:
    stack = _stack_for(data, sudo, state_dir)
    try:
        return stack.status()
    finally:
        stack.ctx.runner.close()


def _stack_status(dle: str, data, sudo: str, state_dir: str) -> dict:
    if data is None:
        return {"dle_id": dle, "state": "unreadable"}
    try:
        status = _live_status(data, sudo, state_dir)
    except SnaplayersError as err:         # one bad journal hides none of the others
        return {"dle_id": dle, "state": "unreadable", "error": " ".join(str(err).split())}
    owner = data.get("owner") or {}
    return {**{k: data[k] for k in ("config", "host", "disk", "dle_id", "device", "state", "pid",
                                    "started")},
            "owner": {"pid": owner.get("pid"), "alive": status["owner_alive"]},
            "layers": [{k: layer[k] for k in ("token", "present", "names", "shared_with")}
                       for layer in status["live"]]}


def names_in_force(policy: dict) -> dict:
    """The forms of the names snaplayers gives kernel objects, from the layers' own constants;
    the suffix and mount base are the installed helper's policy's (what it admits), if any."""
    from . import discover
    from .layers import DM_PREFIX
    from .layers.raid1 import MD_LINKS, MD_PREFIX
    from .layers.vg import CLONE_PREFIX
    from .props import DEFAULT_SUFFIX
    return {"dm_prefix": DM_PREFIX, "guest_vg_prefix": CLONE_PREFIX, "md_prefix": MD_PREFIX,
            "md_link_prefix": MD_LINKS + MD_PREFIX,
            "snapshot_suffix": policy.get("snap_suffix", DEFAULT_SUFFIX),
            "mount_base": policy.get("mount_base"),
            # `discover`'s probes: their snapshots, and their journals while they run
            "discover_suffix": discover.SUFFIX, "discover_state_dir": discover.STATE_DIR}


def root_only(state_dir: str) -> None:
    """The mount base's own check, for the state dir root cleans up from."""
    from .journal import not_roots_alone
    problem = not_roots_alone(state_dir) if os.path.lexists(state_dir) else None
    if problem:
        raise BadInput(f"state dir {state_dir} is not root's alone ({problem}): as root, cleanup "
                       "would follow whatever its owner put there; run it as the Amanda user "
                       "(sudo -u <amanda user> snaplayers cleanup), whose helper decides what is done")


def cmd_cleanup(args) -> int:
    state_dir = _state_dir(args)
    if os.geteuid() == 0:
        root_only(state_dir)
    failed = cleaned = busy = 0
    for dle, data in _journals(args):
        if data is None or (args.disk and data.get("disk") != args.disk):
            continue
        try:
            stack = _stack_for(data, args.sudo, state_dir)
        except SnaplayersError as err:         # one bad journal is that one's failure only
            failed += 1
            print(f"FAILED: {dle}: {' '.join(str(err).split())}")
            continue
        if str(data.get("disk", "")).startswith("group ") and not args.force and \
                time.time() - float(data.get("started") or 0) < stack.ctx.settings.stale_seconds:
            busy += 1       # no Amanda process to ask: a run's DLEs may still come for it
            print(f"in use: {data['disk']}: a group's set younger than stale-seconds; --force "
                  "tears it down now")
            stack.ctx.runner.close()
            continue
        try:
            with stack.lock():
                done = stack.teardown(force=args.force)
            if done:
                cleaned += 1
                print(f"torn down: {data['disk']} ({data['device']})")
            elif stack.journal.load() is None:      # reaped with another DLE of its disk
                cleaned += 1
                print(f"torn down: {data['disk']} ({data['device']}), by another snaplayers "
                      "call meanwhile")
            else:
                busy += 1
                owner = data.get("owner") or {}
                print(f"in use: {data['disk']}: its Amanda process {owner.get('pid', '?')} still "
                      "runs and will tear it down; --force tears it down now")
        except SnapshotInvalid as err:         # torn down all the same: no dump reads it now
            cleaned += 1
            print(f"torn down: {data['disk']} ({data['device']}); it was not whole: "
                  f"{' '.join(str(err).split())}")
        except SnaplayersError as err:
            failed += 1
            print(f"FAILED: {data['disk']}: {' '.join(str(err).split())}")
        finally:
            stack.ctx.runner.close()
    if not any(str((data or {}).get("disk", "")).startswith("group ") for _, data in _journals(args)):
        from .group import state_files      # a group's set is gone with its journals
        for path in state_files(state_dir):
            os.unlink(path)
    print(f"cleanup: {cleaned} torn down, {failed} failed" + (f", {busy} in use" if busy else ""))
    return 1 if failed else 0


_FIELD = re.compile(r"[A-Za-z0-9_.+-]{1,128}\Z")     # a disklist field that needs no quoting


def cmd_discover(args) -> int:
    import signal
    import socket

    from . import tools
    from .device import check_lvm_name
    from .discover import STATE_DIR, SUFFIX, Discovery, Interrupt, ProbeHost, ProbeRunner
    from .errors import show
    from .journal import discover_lock, not_roots_alone
    from .layers import registry
    from .privilege import compile_policy, installed_policy
    from .props import DEFAULT_KEY_DIR, DEFAULT_SIZE, Settings

    for vg in args.vg:
        check_lvm_name("VG", vg, vg)
    if not re.fullmatch(r"[1-9][0-9]{0,2}", args.maxdumps):
        raise BadInput(f"--maxdumps {show(args.maxdumps)} must be a whole number 1..999")
    maxdumps = int(args.maxdumps)
    hostname = args.host or socket.gethostname()
    for what, value in (("--host", hostname), ("--dumptype", args.dumptype)):
        if not _FIELD.match(value):
            raise BadInput(f"{what} {show(value)} must be 1-128 characters of [A-Za-z0-9_.+-]")
    if os.geteuid() != 0:
        raise SnaplayersError("snaplayers discover must run as root on the storage host: it "
                              "snapshots and reads every LV")
    policy = installed_policy(run.helper_path()) or {}
    mount_base = args.mount_base or policy.get("mount_base")
    if not mount_base:
        raise BadInput("no --mount-base, and no installed helper to take it from")
    state_dir = args.state_dir or STATE_DIR
    settings = Settings(mount_base=mount_base, snap_suffix=SUFFIX, size=args.size or DEFAULT_SIZE,
                        state_dir=state_dir, key_dir=args.key_dir or policy.get("key_dir")
                        or DEFAULT_KEY_DIR, sudo="no")
    problem = not_roots_alone(state_dir)
    if problem:
        raise BadInput(f"state dir {state_dir} is not root's alone ({problem})")
    tools.check({t for cls in registry().values() for t in cls.tools})

    stop = Interrupt()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop.signal)
    # the probe stacks run only what the installed helper would admit, its guards included
    stacks = ProbeRunner(stop, policy=compile_policy(mount_base, SUFFIX, settings.key_dir))
    own = ProbeRunner(stop)
    found = Discovery(settings, own, ProbeHost(), hostname, stacks=stacks,
                      progress=lambda line: print(f"discover: {line}", file=sys.stderr, flush=True))
    try:
        with discover_lock(state_dir):
            found.discover(args.vg, spindle=args.spindle == "auto")
    except KeyboardInterrupt:
        raise SnaplayersError("discover interrupted; what it had set up was torn down") from None
    if args.format == "json":
        print(json.dumps(found.as_json(args.dumptype, maxdumps), indent=1))
    else:
        sys.stdout.write(found.disklist(args.dumptype, maxdumps))
    return 0


def cmd_sudoers(args) -> int:
    from .privilege import sudoers
    from .run import helper_path
    sys.stdout.write(sudoers(args.user, args.helper or helper_path()))
    return 0


def cmd_policy(args) -> int:
    from .helper import fill
    from .privilege import compile_policy
    from .props import DEFAULT_KEY_DIR, DEFAULT_SUFFIX
    policy = compile_policy(args.mount_base, args.snap_suffix or DEFAULT_SUFFIX,
                            args.key_dir or DEFAULT_KEY_DIR)
    for rule in policy["rules"]:
        print(shlex.join([policy["tools"][rule[0]], *(fill(p, policy["names"]) for p in rule[1:])]))
    return 0


def cmd_install(args) -> int:
    """The plugin as a one-file zipapp (it needs nothing but Python's stdlib) unless a package
    put it in place, then everything the Amanda user's privilege is made of."""
    from . import privilege
    from .props import DEFAULT_KEY_DIR, DEFAULT_SUFFIX
    if os.geteuid() != 0:
        raise SnaplayersError("snaplayers install must run as root")
    if not args.no_plugin:
        install_plugin(args.application_dir, args.name)
    for line in privilege.install(args.user, args.mount_base, args.snap_suffix or DEFAULT_SUFFIX,
                                  args.key_dir or DEFAULT_KEY_DIR, args.helper,
                                  args.sudoers or privilege.SUDOERS):
        print(line)
    return 0


def install_plugin(application_dir: str | None, name: str) -> None:
    target_dir = application_dir or next((d for d in APPLICATION_DIRS if os.path.isdir(d)), None)
    if target_dir is None:
        raise SnaplayersError("no Amanda application directory found (looked in "
                              f"{', '.join(APPLICATION_DIRS)}); give --application-dir")
    if not os.path.isdir(target_dir):
        raise SnaplayersError(f"{target_dir} is not a directory")
    target = os.path.join(target_dir, name)
    build_zipapp(target)
    print(f"installed {target} (mode 0755)")


def build_zipapp(target: str, interpreter: str = "/usr/bin/python3") -> None:
    import shutil
    import zipapp
    partial = target + ".partial"
    archive = getattr(getattr(sys.modules[__package__], "__loader__", None), "archive", None)
    if archive:     # running from the one-file plugin already: install a copy of it
        shutil.copyfile(archive, partial)
        os.chmod(partial, 0o755)
        os.replace(partial, target)
        return
    package = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="snaplayers-zipapp.") as tmp:
        shutil.copytree(package, os.path.join(tmp, "snaplayers"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _compile_for_zipimport(tmp)
        # -I: no PYTHON* variables or user site from Amanda's environment; -S: the standard
        # library is all it needs, and site's imports are a good part of the start-up time
        if os.path.isabs(interpreter) and " " not in interpreter:
            interpreter += " -IS"
        zipapp.create_archive(tmp, partial, interpreter=interpreter,
                              main="snaplayers.amanda:_zipapp_main", compressed=False)
        os.chmod(partial, 0o755)
        os.replace(partial, target)


def _compile_for_zipimport(tree: str) -> None:
    """module.pyc next to module.py, which zipimport loads instead of compiling the source on
    every start; unchecked hash, since a zip member's mtime means nothing. Another Python's
    interpreter sees a foreign magic number and falls back to the source."""
    import py_compile
    for d, _, files in os.walk(tree):
        for f in files:
            if f.endswith(".py"):
                src = os.path.join(d, f)
                py_compile.compile(src, cfile=src + "c", dfile=os.path.relpath(src, tree), doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


COMMANDS = {"plan": cmd_plan, "status": cmd_status, "cleanup": cmd_cleanup, "discover": cmd_discover,
            "sudoers": cmd_sudoers, "policy": cmd_policy, "install": cmd_install}
