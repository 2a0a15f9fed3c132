#!/usr/bin/python3 -IS
"""The one privileged path: sudo runs this helper as root for the Amanda user, and it runs a
command only if the argv matches, argument by argument, a template the layers declare.

Standard library only and nothing of snaplayers: `snaplayers install` writes this file, root's,
with the policy compiled from the layers in place of `POLICY = {}` below, and one sudoers line
names it. Matching is Python's `re` on each argument whole, the same under every sudo: no
wildcard can span two arguments, no argument can be added. Paths are checked by what is on disk
(a mount point must be a plain directory in a root-owned mount base), not by their text.
"""

import os
import re
import stat
import sys

NAME = "snaplayers-helper"
REFUSED = 126           # no layer accepts this exit status: a refusal never reads as "not found"
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
GUARDED_MOUNTS = ("mount", "umount", "mkdir", "rmdir")    # tools whose last argument is a mount point


class Refused(Exception):
    pass


def lvm_config(device):
    """LVM settings that let one command see one device: '.' and '+' in its path are classes in
    LVM's regex. The vg layer passes this; the helper admits `--config` only in this form."""
    exact = "".join(f"[{c}]" if c in ".+" else c for c in device)
    # global_filter admits the one device; filter (which lvm.conf may narrow) admits it too
    # no dmeventd monitoring either: it would run LVM commands of its own on the guest's LVs
    return (f'devices/global_filter=["a|^{exact}$|","r|.*|"] devices/filter=["a|.*|"] '
            'devices/scan_lvs=1 devices/use_devicesfile=0 devices/hints="none" '
            "backup/backup=0 backup/archive=0 activation/monitoring=0")


_LVM_DEVICE = re.compile(r'devices/global_filter=\["a\|\^([^$|"]*)\$\|')


def unsafe_dir(path):
    """Why `path` is no safe place for mounts, or None: it and every directory above it must be
    a real directory of root's that nobody else can write (else a symlink can be planted)."""
    p = path
    while True:
        try:
            st = os.lstat(p)
        except OSError as err:
            return f"{p}: {err.strerror}"
        if stat.S_ISLNK(st.st_mode):
            return f"{p} is a symlink"
        if not stat.S_ISDIR(st.st_mode):
            return f"{p} is not a directory"
        if st.st_uid != 0:
            return f"{p} is owned by uid {st.st_uid}, not root"
        # an ancestor may be sticky like /tmp: others can add entries there but not replace ours
        if st.st_mode & 0o022 and not (p != path and st.st_mode & stat.S_ISVTX):
            return f"{p} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        if p == "/":
            return None
        p = os.path.dirname(p)


def unescape(field):
    """A path field of /proc/self/mountinfo ('\\040' is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountpoints():
    with open("/proc/self/mountinfo") as f:
        return {unescape(line.split()[4]) for line in f if line.strip()}


def _dm_name(majmin):
    try:
        with open(f"/sys/dev/block/{majmin}/dm/name") as f:
            return f.read().strip()
    except OSError:
        return None


def _guard_devices(policy, tool, args):
    """A name proves nothing by itself: without udev a stopped array's /dev/md link or a removed
    mapping's node can linger and point at whatever takes that number next. So each device
    named (in an argument, a dm table or an LVM filter) is checked in the kernel."""
    if tool == "rm":        # removing a link changes no device, and a stale one must go
        return
    for i, arg in enumerate(args):
        if tool == "mdadm" and args[0] == "--assemble" and i == 1:
            continue        # the array to be made: mdadm refuses a name already in use
        device = _lvm_device(arg)
        paths = [device] if device else arg.split()
        for path in paths:
            if path.startswith(("/dev/mapper/", "/dev/md")):
                _check_device(policy, path)


def _check_device(policy, path):
    """A mapping must carry that very name; an array may be made of snaplayers' mappings only."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return              # nothing there to act on: the tool itself fails
    except OSError as err:
        raise Refused(f"{path!r}: {err.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise Refused(f"{path!r} is not a block device")
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if path.startswith("/dev/mapper/"):
        if _dm_name(majmin) != path[len("/dev/mapper/"):]:
            raise Refused(f"{path!r} is device {majmin}, which is not that mapping")
        return
    try:
        legs = os.listdir(f"/sys/dev/block/{majmin}/slaves") if os.major(st.st_rdev) == 9 else []
    except OSError:
        legs = []
    if not legs:
        raise Refused(f"{path!r} is device {majmin}, which is no md array with legs")
    for leg in legs:
        try:
            with open(f"/sys/class/block/{leg}/dev") as f:     # a partition too
                name = _dm_name(f.read().strip())
        except OSError:
            name = None
        if name is None or not re.fullmatch(policy["devices"], f"/dev/mapper/{name}"):
            raise Refused(f"{path!r} is an array with a leg {leg} that is not snaplayers'")


# where libcryptsetup looks for a LUKS2 header: the primary, then the secondary's fixed offsets
_LUKS2_OFFSETS = (0, *(0x4000 << i for i in range(9)))


def _guard_luks(args):
    """cryptsetup tries a LUKS2 header's tokens (a TPM, a FIDO key, the kernel keyring) before
    the key file: a snapshot of a host's LUKS2 volume with such a token would open without a
    key of ours. Only devices none of whose LUKS2 headers (primary or secondary) has tokens."""
    import json
    device = args[-2]
    try:
        f = open(device, "rb")
    except FileNotFoundError:
        return                          # nothing to open: cryptsetup fails by itself
    with f:
        for offset in _LUKS2_OFFSETS:
            f.seek(offset)
            head = f.read(4096)
            if head[:6] not in (b"LUKS\xba\xbe", b"SKUL\xba\xbe") or head[6:8] != b"\0\2":
                continue                # LUKS1 has no tokens; no header here
            size = int.from_bytes(head[8:16], "big")
            if not 4096 < size <= 4 * 1024 * 1024:
                raise Refused(f"{device!r}: LUKS2 header size {size} is out of range")
            try:
                tokens = json.loads(f.read(size - 4096).split(b"\0", 1)[0]).get("tokens")
            except (ValueError, AttributeError):
                raise Refused(f"{device!r}: a LUKS2 header at {offset} is not readable") from None
            if tokens:
                raise Refused(f"{device!r}: its LUKS2 header has tokens ({len(tokens)}); "
                              "snaplayers opens only with a key file")


def _guard_lvremove(policy, args):
    """Only a snapshot goes: an LV of the host's that is merely named like one (`<lv>.amsnap`)
    is its owner's data. LVM's word, as root sees it; an LV that is not there is left to lvremove."""
    import subprocess
    lv = args[-1]
    proc = subprocess.run([policy["tools"]["lvs"], "--noheadings", "-o", "origin", lv],
                          stdin=subprocess.DEVNULL, capture_output=True, env=ENV, cwd="/",
                          text=True, errors="replace", check=False)
    if proc.returncode == 5:
        return
    if proc.returncode != 0:
        raise Refused(f"{lv!r}: lvs exited {proc.returncode}: whether it is a snapshot is unknown")
    if not proc.stdout.strip():
        raise Refused(f"{lv!r} is not a snapshot")


def _lvm_device(arg):
    """The one device an lvm_config() text admits, or None."""
    found = _LVM_DEVICE.match(arg)
    return found.group(1).replace("[.]", ".").replace("[+]", "+") if found else None


def fill(template, names):
    """A template's {NAME}s replaced by the policy's patterns (regex counts like {1,2} stay)."""
    return re.sub(r"\{([A-Z]+)\}", lambda m: names[m.group(1)], template)


def _element_matches(pattern, arg):
    if pattern.startswith("=lvmconf:"):     # LVM settings for exactly one device of ours
        device = _lvm_device(arg) or ""
        return bool(re.fullmatch(pattern[9:], device)) and arg == lvm_config(device)
    return re.fullmatch(pattern, arg) is not None


def _guard_mountpoint(policy, tool, args):
    """A mount point is a plain directory directly in the root-owned mount base, looked at on
    disk: mount and umount follow a symlink there, sudo and regexes only see text."""
    base, target = policy["mount_base"], args[-1]
    problem = unsafe_dir(base)
    if problem:
        raise Refused(f"mount base {base} is not safe: {problem}")
    if os.path.dirname(target) != base:
        raise Refused(f"{target!r} is not directly in the mount base {base}")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if tool == "mkdir":
        if st is not None:
            raise Refused(f"{target!r} exists already")
        return
    if st is None or stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise Refused(f"{target!r} is not a directory of root's (a symlink, or missing)")
    mounted = target in mountpoints()
    if tool == "umount" and not mounted:
        raise Refused(f"{target!r} is not a mount point")
    if tool in ("mount", "rmdir") and mounted:
        raise Refused(f"{target!r} is a mount point already")
    if tool == "mount":
        source = args[-2]
        try:
            if not stat.S_ISBLK(os.stat(source).st_mode):
                raise Refused(f"{source!r} is not a block device")
        except OSError as err:
            raise Refused(f"{source!r}: {err.strerror}") from None


# Commands the helper carries out itself: what must not be left half-done by a caller that dies
SET = "snapshot-set"
SET_TOOLS = ("lvs", "lvcreate", "lvremove", "dmsetup")
# the longest a set's origins stay suspended, from the first suspend to the last resume: well
# inside an iSCSI initiator's 30 s SCSI command timeout (measured under TCG: 2.7-5.1 s for two)
SET_HOLD = 15.0
SET_TRIES = 4           # a busy VG lock, or an lvcreate past the hold: the set is tried again
# every signal sudo passes on from its caller (SIGALRM makes sudo SIGKILL its command): the
# hold runs in a process of its own that ignores them, one sudo does not know
_HELD_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
                 "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGPIPE", "SIGXCPU", "SIGXFSZ", "SIGVTALRM",
                 "SIGPROF", "SIGWINCH")


def _tool(tools, *argv, timeout=120):
    import subprocess
    return subprocess.run([tools[argv[0]], *argv[1:]], stdin=subprocess.DEVNULL,
                          capture_output=True, env=ENV, cwd="/", text=True, errors="replace",
                          check=False, timeout=timeout)


def _dm(name):
    return name.replace("-", "--")


def _mapping_of(dev):
    """(dm name, major:minor) of the device node at dev as the kernel has them; None: no
    device there."""
    try:
        st = os.stat(dev)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return "", ""
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return _dm_name(majmin), majmin


def _host_uses(majmin):
    """Why this host itself uses the device (mounted, swap, under another device), or None: its
    I/O held, the host could wait on itself (lvcreate fsyncs LVM's backup into /etc)."""
    with open("/proc/self/mountinfo") as f:
        if any(line.split()[2] == majmin for line in f if line.strip()):
            return "is mounted on this host"
    try:
        with open("/proc/swaps") as f:
            swaps = [line.split()[0] for line in f.read().splitlines()[1:] if line.strip()]
    except OSError:
        swaps = []
    for path in swaps:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" == majmin:
            return "is a swap area of this host"
    try:
        if os.listdir(f"/sys/dev/block/{majmin}/holders"):
            return "holds another device of this host"
    except OSError:
        pass
    return None


def group_origins(path, mount_base):
    """The origin sets the root-owned groups file names ({vg/lv, ...} per line): the only sets
    the helper makes. Each device field's first token is lvm=<vg>+<lv>."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    problem = unsafe_dir(os.path.dirname(path)) or (
        "not root's" if st.st_uid != 0 else "writable by others" if st.st_mode & 0o022 else None)
    if problem:
        raise Refused(f"groups file {path}: {problem}")
    token = re.compile(re.escape(mount_base) + r"/lvm=([^,/+]+)\+([^,/]+)")
    sets = []
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            found = [token.match(w) for w in words[1:]]
            sets.append(frozenset(f"{m.group(1)}/{m.group(2)}" for m in found if m))
    return [s for s in sets if len(s) >= 2]


def set_members(tools, args, groups=None):
    """What `snapshot-set --suffix SUFFIX --size SIZE VG/LV VG/LV ...` would hold, checked and
    read only: the origins of one group of `groups` (when given), each once; plain, origin or
    thin LVs, active, each its own mapping, none used by this host itself; each snapshot named
    <lv><suffix>. [(origin, snapshot, device, size arguments)], or Refused."""
    if len(args) < 6 or args[0] != "--suffix" or args[2] != "--size":
        raise Refused(f"{SET} takes --suffix, --size and two or more origins")
    suffix, size, origins = args[1], args[3], args[4:]
    if len(set(origins)) != len(origins):
        raise Refused(f"{SET} takes each origin once")
    if groups is not None and frozenset(origins) not in groups:
        raise Refused(f"{' '.join(origins)} are not the LVs of one group in the groups file")
    members = []
    for origin in origins:
        vg, _, lv = origin.partition("/")
        proc = _tool(tools, "lvs", "--noheadings", "-o", "lv_attr,origin", origin)
        fields = proc.stdout.split()
        if proc.returncode != 0 or not fields:
            raise Refused(f"{origin!r}: {' '.join(proc.stderr.split()) or 'no such LV'}")
        if len(fields) > 1 or fields[0][:1] not in ("-", "o", "V"):     # plain, origin, thin
            raise Refused(f"{origin!r} is no origin volume (lv_attr {fields[0]})")
        dev = f"/dev/mapper/{_dm(vg)}-{_dm(lv)}"
        name, majmin = _mapping_of(dev) or (None, None)
        if name != dev[len("/dev/mapper/"):]:
            raise Refused(f"{dev!r} is not the active mapping of {origin!r}")
        used = _host_uses(majmin)
        if used:
            raise Refused(f"{origin!r} {used}")
        # a thin origin too gets a copy-on-write snapshot: LVM's thin snapshot of an origin
        # suspended before it left the pool's transaction id behind LVM's (lvm2 2.03.16)
        size_args = ["--extents" if size.endswith("%ORIGIN") else "--size", size]
        members.append((origin, lv + suffix, dev, size_args))
    return members


def snapshot_set(tools, args, groups=None):
    """`snapshot-set --suffix SUFFIX --size SIZE VG/LV VG/LV ...`: snapshots of several origins
    that hold one instant. Every origin is suspended (its I/O held, `--nolockfs`: nothing on
    this host has it mounted) before the first lvcreate; each lvcreate resumes its own origin
    when its snapshot exists; every origin is resumed at the end, and by the deadline whatever
    a command is doing. The hold runs in a process of its own (see _HELD_SIGNALS), so neither a
    signal nor this process's death cuts it short. Returns (exit status, stdout, stderr)."""
    import json
    members = set_members(tools, args, groups)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # out of sudo's sight: setsid, fork again
        code = 1
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                import signal
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):                # the caller's pipes are not held open by it
                    os.dup2(null, fd)
                for name in _HELD_SIGNALS:
                    if hasattr(signal, name):
                        signal.signal(getattr(signal, name), signal.SIG_IGN)
                result = _attempts(tools, members)
                try:
                    os.write(w, json.dumps(result).encode())
                except OSError:
                    pass                            # nobody waits for the answer any more
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    try:
        code, out, err = json.loads(b"".join(chunks) or b"null")
    except (TypeError, ValueError):
        return 1, "", f"{SET}: the process holding the set gave no answer\n"
    return code, out, err


def _attempts(tools, members):
    import time
    log, code, err = [], 1, ""
    for attempt in range(1, SET_TRIES + 1):
        code, err, busy = _take_set(tools, members, log)
        if code == 0 or not busy:
            break
        time.sleep(2.0 * attempt)       # what held the VG lock or the CPU is a command of seconds
    return [code, "".join(f"{line}\n" for line in log), err]


def _bounded(tools, argv, deadline):
    """Runs argv until it ends or the deadline passes: (process, whether it ended). A process
    past the deadline is left running: a command in the kernel (a fsync under a suspended
    device) cannot be killed, and the hold must end first."""
    import subprocess
    import time
    proc = subprocess.Popen([tools[argv[0]], *argv[1:]], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd="/",
                            text=True, errors="replace")
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return proc, False
        time.sleep(0.01)
    proc.stdout_text, proc.stderr_text = proc.communicate()
    return proc, True


def _take_set(tools, members, log):
    """One try: (exit status, stderr, whether LVM's lock was busy). What a failed try made is
    removed again."""
    import time
    for origin, _, dev, _ in members:
        state = _tool(tools, "dmsetup", "info", "-c", "--noheadings", "-o", "suspended", dev)
        if state.returncode != 0 or state.stdout.strip() != "Active":
            return 5, f"{SET}: {origin} is {state.stdout.strip() or 'not active'}: another " \
                      "command is changing it\n", False
    made, suspended, failure, busy, late = [], [], None, False, []
    start = time.monotonic()
    deadline = start + SET_HOLD
    try:
        for origin, _, dev, _ in members:
            suspended.append(dev)       # resumed in any case: a suspend cut short may have held it
            proc, ended = _bounded(tools, ["dmsetup", "suspend", "--nolockfs", dev], deadline)
            if not ended:
                late.append(proc)
                failure = f"dmsetup suspend {dev} ran past the {SET_HOLD:g} s hold"
                break
            if proc.returncode != 0:
                failure = f"dmsetup suspend {dev}: {' '.join(proc.stderr_text.split())}"
                break
        for origin, snap, dev, size_args in members if failure is None else ():
            still = _tool(tools, "dmsetup", "info", "-c", "--noheadings", "-o", "suspended", dev,
                          timeout=max(deadline - time.monotonic(), 0.1))
            if still.stdout.strip() != "Suspended":     # another command resumed it: later I/O
                failure = f"{origin} was resumed by another command during the set"
                break
            if time.monotonic() >= deadline:
                failure = f"the origins were held {SET_HOLD:g} s before {origin}'s snapshot"
                break
            proc, ended = _bounded(tools, ["lvcreate", "--config", "global/wait_for_locks=0",
                                           "--snapshot", "--name", snap, *size_args, origin],
                                   deadline)
            made.append(f"{origin.split('/')[0]}/{snap}")       # if it got that far
            if not ended:
                late.append(proc)
                busy = True     # a host busy for a moment (11 set-ups at once under TCG): again
                failure = f"lvcreate of {snap} ran past the {SET_HOLD:g} s hold"
                break
            if proc.returncode != 0:
                made.pop()
                busy = "lock" in proc.stderr_text.lower()
                failure = f"lvcreate of {snap}: {' '.join(proc.stderr_text.split())}"
                break
    except BaseException as err:        # the fork failed, a tool vanished: resume all the same
        failure = f"{type(err).__name__}: {err}"
    finally:
        for dev in suspended:           # each lvcreate resumed its own; the rest, whatever happened
            try:
                _tool(tools, "dmsetup", "resume", dev, timeout=10)
            except Exception as err:    # the next one is resumed all the same
                failure = failure or f"dmsetup resume {dev}: {err}"
        held_for = time.monotonic() - start
    log.append(f"origins held {held_for:.3f} s for {len(made)} of {len(members)} snapshot(s)")
    for proc in late:                   # now that nothing is held, it can end
        try:
            proc.wait(timeout=60)
        except Exception:
            proc.kill()
    if failure is None:
        return 0, "", False
    for lv in made:                     # a set is whole or not at all
        try:
            check = _tool(tools, "lvs", "--noheadings", "-o", "origin", lv)
            if check.returncode == 0 and check.stdout.strip():
                _tool(tools, "lvremove", "--yes", lv)
        except Exception:
            pass
    return 5, f"{SET}: {failure}\n", busy


def run_builtin(policy, argv):
    """(exit status, stdout, stderr) of a command the helper carries out itself; only a set of
    the groups file's, when the policy names one."""
    groups = (group_origins(policy["groups"], policy["mount_base"])
              if policy.get("groups") else None)
    return snapshot_set(policy["tools"], argv[1:], groups)


def admit(policy, argv, guard=True):
    """The absolute path to run argv[0] with, if the argv is one the policy admits; else Refused
    naming the first argument that does not fit. guard=False: the patterns alone (tests)."""
    if not policy.get("rules"):
        raise Refused(f"no policy compiled into {NAME}: run `snaplayers install`")
    if not argv:
        raise Refused("no command given")
    tool, args = argv[0], list(argv[1:])
    forms = [[fill(part, policy["names"]) for part in rule[1:]]
             for rule in policy["rules"] if rule[0] == tool]
    if not forms:
        raise Refused(f"command {tool!r} is not one snaplayers runs")
    best = (-1, f"{tool} never takes {len(args)} arguments")
    for form in forms:
        if len(form) != len(args):
            continue
        for i, (pattern, arg) in enumerate(zip(form, args)):
            if not _element_matches(pattern, arg):
                best = max(best, (i, f"{tool}: argument {i + 1} {arg!r} is not admitted"))
                break
        else:
            if guard:
                _guard_devices(policy, tool, args)
                if tool in GUARDED_MOUNTS:
                    _guard_mountpoint(policy, tool, args)
                if tool == "cryptsetup" and args[0] == "open":
                    _guard_luks(args)
                if tool == "lvremove":
                    _guard_lvremove(policy, args)
                if tool == SET:
                    set_members(policy["tools"], args, group_origins(policy["groups"], policy["mount_base"])
                                if policy.get("groups") else None)
            return tool if tool == SET else policy["tools"][tool]
    raise Refused(best[1])


ENV = {"PATH": SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
MAX_REQUEST = 65536


def serve(policy, lines, out):
    """`--serve`: one sudo for a whole plugin call. Each line in is a JSON list (an argv),
    checked exactly as on the command line; each line out is [exit status, stdout, stderr].
    Under emulation a Python start costs about a second: once per call, not per command."""
    import json
    import subprocess
    for line in lines:
        if len(line) > MAX_REQUEST:
            out.write(json.dumps([REFUSED, "", f"{NAME}: refused: a request over {MAX_REQUEST} "
                                               "bytes\n"]) + "\n")
            out.flush()
            return REFUSED          # the rest of that line would be read as requests
        try:
            argv = json.loads(line)
            if not isinstance(argv, list) or not all(isinstance(a, str) and "\0" not in a for a in argv):
                raise Refused("a request is a JSON list of strings")
            path = admit(policy, argv)
            if path == SET:
                reply = list(run_builtin(policy, argv))
            else:
                proc = subprocess.run([path, *argv[1:]], stdin=subprocess.DEVNULL,
                                      capture_output=True, env=ENV, cwd="/", text=True,
                                      errors="replace", check=False)
                reply = [proc.returncode, proc.stdout, proc.stderr]
        except Exception as err:    # a refusal, a bad request, a guard that could not look
            reply = [REFUSED, "", f"{NAME}: refused: {' '.join(str(err).split())}\n"]
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


def main(argv=None, policy=None):
    argv = sys.argv[1:] if argv is None else argv
    policy = POLICY if policy is None else policy
    if argv == ["--serve"]:
        os.umask(0o022)
        return serve(policy, iter(lambda: sys.stdin.readline(MAX_REQUEST + 1), ""), sys.stdout)
    check = argv[:1] == ["--check"]         # say whether an argv is admitted; run nothing
    if check:
        argv = argv[1:]
    try:
        path = admit(policy, argv)
    except Exception as err:        # a refusal, or a guard that could not look: the same
        sys.stderr.write(f"{NAME}: refused: {' '.join(str(err).split())}\n")
        return REFUSED
    if check:
        sys.stdout.write("admitted\n")
        return 0
    os.umask(0o022)
    os.chdir("/")
    if path == SET:
        try:
            code, out, err = run_builtin(policy, argv)
        except Exception as err:    # a refusal found on the disk
            sys.stderr.write(f"{NAME}: refused: {' '.join(str(err).split())}\n")
            return REFUSED
        sys.stdout.write(out)
        sys.stderr.write(err)
        return code
    null = os.open("/dev/null", os.O_RDONLY)     # nothing of the caller's reaches the tool
    os.dup2(null, 0)
    os.execve(path, [path, *argv[1:]], ENV)
    return REFUSED      # not reached: execve replaces this process or raises


POLICY = {}

if __name__ == "__main__":
    sys.exit(main())
