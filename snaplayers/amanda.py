"""script-snaplayers: Amanda's Script API. The only module that knows Amanda's conventions:
stdout carries `PROPERTY` lines (and, during amcheck, nothing else: Amanda reports every other
line as an error), stderr carries one error line, and the exit status fails the call.

Imports are lazy: Amanda runs `support` before every call, so it must answer at once.
"""

import sys

SUPPORT = ("CONFIG YES", "HOST YES", "DISK YES", "MESSAGE-LINE YES", "EXECUTE-WHERE YES",
           "TIMESTAMP YES")

SETUP = ("PRE-DLE-AMCHECK", "PRE-DLE-ESTIMATE", "PRE-DLE-BACKUP")
TEARDOWN = ("POST-DLE-AMCHECK", "POST-DLE-ESTIMATE", "POST-DLE-BACKUP")
# Commands a wider `execute-on` may send: a clean no-op each.
NOOP = ("PRE-HOST-AMCHECK", "POST-HOST-AMCHECK", "PRE-HOST-ESTIMATE", "POST-HOST-ESTIMATE",
        "PRE-HOST-BACKUP", "POST-HOST-BACKUP", "PRE-RECOVER", "POST-RECOVER",
        "PRE-LEVEL-RECOVER", "POST-LEVEL-RECOVER", "INTER-LEVEL-RECOVER")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].lower() == "support":
        sys.stdout.write("\n".join(SUPPORT) + "\n")
        return 0
    if argv and argv[0].upper() in NOOP:    # before any import: Amanda may call these often
        return 0
    if argv and argv[0] in ("--help", "-h"):    # an operator asking: nothing is run or written
        sys.stdout.write(usage())
        return 0
    from .errors import SnaplayersError
    try:
        return _call(argv)
    except SnaplayersError as err:
        return fail(err, err.exit_status)
    except KeyboardInterrupt:
        return fail("interrupted; the stack was unwound", 130)


SYNOPSIS = "COMMAND [--OPTION VALUE ...]"


def manual():
    """What --help says: a description, then (title, lead, blocks) sections, each listed from
    the code that answers or reads it; a block is a paragraph, an (item, text) pair or a (line,)
    shown as it is. usage() prints it, and the package's script-snaplayers(8) is made of it."""
    from .device import GRAMMAR, LAYERS
    from .errors import BadInput, MissingTools, SnapshotInvalid
    from .props import PROPERTIES, default

    description = ("An Amanda Script API plugin. Before each DLE's amcheck, estimate and backup it "
                   "snapshots the LVM volume the device field names, assembles the layers on the "
                   "snapshot and mounts the filesystem read-only at the device field's path, for "
                   "Amanda to read; after each it tears that stack down. Amanda runs it on the "
                   "client (execute-where client): stdout carries PROPERTY lines, stderr one "
                   "error line, and a non-zero exit status fails the call.")
    properties = []
    for name, prop in PROPERTIES.items():
        value = default(prop)
        properties.append((f"{name} ({'required' if value is None else 'default ' + value})",
                           prop.meaning))
    return description, [
        ("Commands", "case does not matter", [
            ("support", "prints the capabilities Amanda asks for before each call"),
            (", ".join(SETUP), "set the stack up; the ESTIMATE and BACKUP calls print "
                               "'PROPERTY directory <mount point>'"),
            (", ".join(TEARDOWN), "tear it down; a snapshot that overflowed or a mount that "
                                  "vanished fails the call, and so the dump, as does a "
                                  "POST-DLE-BACKUP that finds no stack of its DLE up"),
            (", ".join(NOOP), "no-ops, for a wider execute-on")]),
        ("Options", "", [
            "Amanda passes --execute-where client, --config, --host, --disk, --device "
            "(required), --level, --timestamp, --success or --failed; any other --NAME VALUE is "
            "a property."]),
        ("Device field", "the disklist entry's device, which is the mount point, read from the "
                         "bottom up", [
            (GRAMMAR,),
            *[(layer.syntax, layer.meaning) for layer in LAYERS],
            "A layer kind never follows itself; one raid1 and one vg= per stack. Example: "
            "/v/amsnap/lvm=data0+vol00,raid1,part=1 is partition 1 of the degraded RAID1 whose "
            "leg is LV data0/vol00."]),
        ("Properties", 'set with property "NAME" "value" in the script-tool', properties),
        ("Exit status", "", [
            f"0 done; {BadInput.exit_status} refused input, before anything ran; "
            f"{MissingTools.exit_status} missing tools; {SnapshotInvalid.exit_status} the "
            "snapshot overflowed or its mount vanished: the dump fails; 1 any other failure."]),
    ]


def usage() -> str:
    """manual() as --help prints it."""
    import textwrap

    from . import __version__

    def para(text: str, indent: str) -> str:
        return textwrap.fill(text, 96, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False) + "\n"

    description, sections = manual()
    out = [f"usage: script-snaplayers {SYNOPSIS}   (snaplayers {__version__})\n\n",
           para(description, "")]
    for title, lead, blocks in sections:
        out.append(f"\n{title} ({lead}):\n" if lead else f"\n{title}:\n")
        for block in blocks:
            if isinstance(block, str):
                out.append(para(block, "  "))
            elif len(block) == 1:
                out.append(f"  {block[0]}\n")
            else:
                out.append(para(block[0], "  ") + para(block[1], " " * 6))
    out.append("\nThe operator commands (status, cleanup, ...): snaplayers --help\n")
    return "".join(out)


def fail(message, status: int) -> int:
    line = " ".join(str(message).split())       # one line, whatever the message held
    sys.stderr.write(f"snaplayers: {line}\n")
    log = sys.modules.get("snaplayers.log")
    if log is not None and log.started():       # a log was started: the error belongs in it
        log.get("snaplayers").error("failed: %s", line)
    return status


def _zipapp_main() -> None:
    """One file serves both commands: Amanda runs it as script-snaplayers, an admin may copy it
    as snaplayers for the operator commands."""
    import os
    if os.path.basename(sys.argv[0]).startswith("script-"):
        sys.exit(main())
    from .cli import main as operator_main
    sys.exit(operator_main())


def _call(argv) -> int:
    from .device import parse
    from .errors import BadInput
    from .props import parse_call, settings_from

    call = parse_call(argv)
    if call.command in NOOP:
        return 0
    if call.command not in SETUP + TEARDOWN:
        raise BadInput(f"unknown command {call.command!r}")
    if call.execute_where not in (None, "client"):
        raise BadInput(f"--execute-where {call.execute_where!r}: snaplayers runs where the "
                       "volumes are; use execute-where client")
    if not call.device:
        raise BadInput("missing --device (the disklist entry's device field)")
    settings = settings_from(call.properties)
    spec = parse(call.device, settings.mount_base)
    settings.check_device(spec)
    _root_only(settings)
    from .group import find as find_group
    group = find_group(settings, spec.format())      # a bad groups file is bad input too
    # Input is valid from here on: only now is anything written (the log, the journal).
    return _run(call, settings, spec, group)


def _root_only(settings) -> None:
    """Run as root, the plugin writes its journal, locks and debug log with root's rights: not
    in a directory the Amanda user (or anyone) can plant symlinks in."""
    import os

    from .errors import BadInput
    from .journal import not_roots_alone
    if os.geteuid() != 0:
        return
    for prop, path in (("state-dir", settings.state_dir), ("log-dir", settings.log_dir)):
        problem = not_roots_alone(path)
        if problem:
            raise BadInput(f"{prop} {path} is not root's alone ({problem}): run as root, "
                           "snaplayers would follow whatever its owner put there; run it as the "
                           f"Amanda user, or give root a {prop} of its own")


def environment(settings):
    """The real machine: a runner for commands and a host for live reads (tests swap these)."""
    from .layers import Host
    from .run import Runner
    return Runner(settings.sudo, settings.debug), Host()


def _run(call, settings, spec, group=None) -> int:
    import contextlib
    import signal

    from . import log, tools
    from .errors import SnapshotInvalid
    from .group import GroupSet
    from .layers import Context
    from .stack import Stack, dle_id, required_tools

    runner, host = environment(settings)
    tools.check(required_tools(spec) + (["sudo"] if runner.use_sudo else []))

    logfile = log.start(settings.log_dir, "script-snaplayers")
    logger = log.get("snaplayers")
    logger.info("%s disk=%s device=%s levels=%s outcome=%s timestamp=%s", call.command, call.disk,
                call.device, call.levels, call.outcome, call.timestamp)

    def interrupted(signum, frame):
        raise KeyboardInterrupt     # unwinds a half-built stack on SIGTERM/SIGHUP too

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    disk = call.disk or call.device
    ctx = Context(runner, host, settings,
                  dle_id(call.config or "", call.host or "", disk))
    stack = Stack(ctx, call.config or "", call.host or "", disk)
    sets = GroupSet(ctx, group, call.config or "", call.host or "") if group else None
    try:
        with stack.lock(), sets.lock() if sets else contextlib.nullcontext():
            if call.command in SETUP:
                try:
                    if sets:
                        sets.ensure(call.command, call.timestamp, spec.format())
                    mountpoint = stack.setup(spec)
                except BaseException:
                    if sets:        # it will not be torn down: the set must not wait for it
                        sets.done(call.command, spec.format(), quiet=True)
                    raise
                logger.info("up: %s (log %s)", mountpoint, logfile)
                if call.command != "PRE-DLE-AMCHECK":
                    sys.stdout.write(f"PROPERTY directory {mountpoint}\n")
            else:
                try:
                    done = stack.teardown()
                finally:
                    if sets:        # what this DLE read is judged above, not by the set's end
                        sets.done(call.command, spec.format(), quiet=True)
                logger.info("torn down" if done else "nothing recorded to tear down")
                if call.command == "POST-DLE-BACKUP" and stack.torn_down is not None:
                    _date_incrementals(call, settings, disk, stack.torn_down)
                elif call.command == "POST-DLE-BACKUP" and call.outcome != "failed":
                    # the dump read a directory no stack of this call's held up to its end
                    raise SnapshotInvalid(
                        f"no stack of DLE {disk} was up when its dump ended (it was never set "
                        "up, or another call tore it down meanwhile): what was dumped is not "
                        "known to be the snapshot's")
    finally:
        runner.close()
    return 0


def _date_incrementals(call, settings, disk, torn_down) -> None:
    """After a dump from a snapshot this call tore down: tar recorded its own start in the
    dump's listed-incremental files, later than the snapshot (see snaplayers.incremental)."""
    from . import incremental, log
    if call.outcome == "failed":
        log.get("snaplayers").info("the dump failed: its listed-incremental files are left "
                                   "as they are")
        return
    from .stack import instant
    incremental.date_back(settings.gnutar_listdir, call.host, disk, call.levels,
                          instant(torn_down), settings.incremental_margin)
