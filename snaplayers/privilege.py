"""The privileged path, generated from what the layers declare: the helper's policy (every argv
template as written, and the pattern of every name in it), the helper file itself, and the one
sudoers line for it.

Each layer declares `privileged` (argv templates, one pattern per argument) and `names` (the
format of every name it makes, as a pattern). Nothing here knows a layer's names.
"""

from __future__ import annotations

import grp
import os
import pkgutil
import pwd
import re
import subprocess
import tempfile

from . import helper, tools
from .run import HELPERS
from .device import check_path
from .errors import BadInput, SnaplayersError, show
from .layers import registry
from .props import DEFAULT_GROUPS, DEFAULT_KEY_DIR, DEFAULT_SUFFIX, EXTENTS, SIZE, check_suffix

SUDOERS = "/etc/sudoers.d/snaplayers"

# Names as LVM and this plugin form them; shared by every layer's `names`.
COMMON = {
    "ID": r"[0-9a-f]{12}",                                  # a layer's id (layers.node_id)
    "NAME": r"(?!\.\.?(?:/|$))[A-Za-z0-9_.][A-Za-z0-9_.-]*",  # LVM's name rules, without '+'
    "DMNAME": r"[A-Za-z0-9_.](?:[A-Za-z0-9_.]|--)*",        # such a name in a dm name: '-' doubled
    "SIZE": SIZE, "EXTENTS": EXTENTS,
    "UUID": r"[0-9a-f]{8}(?::[0-9a-f]{8}){3}",
}


def _fill(pattern: str, values: dict[str, str]) -> str:
    # repeated: a name's format may be written with other names
    while True:
        filled = helper.fill(pattern, values)
        if filled == pattern:
            return filled
        pattern = filled


def values(mount_base: str, suffix: str, key_dir: str) -> dict[str, str]:
    """Every placeholder: the common ones, the policy's, and each layer's declared names; DEV is
    every device a layer offers to the one above it."""
    out = dict(COMMON, SUFFIX=re.escape(suffix), MOUNTBASE=re.escape(mount_base),
               KEYDIR=re.escape(key_dir))
    offers = []
    for cls in registry().values():
        out.update(cls.names)
        if cls.offers:
            offers.append(cls.offers)
    out["DEV"] = "(?:" + "|".join(offers) + ")"
    return {k: _fill(v, out) for k, v in out.items()}



def compile_policy(mount_base: str, suffix: str = DEFAULT_SUFFIX,
                   key_dir: str = DEFAULT_KEY_DIR) -> dict:
    check_path("mount-base", mount_base)
    check_path("key-dir", key_dir)
    check_suffix(suffix)
    vals = values(mount_base, suffix, key_dir)
    rules = [list(template) for cls in registry().values() for template in cls.privileged]
    used = {m for rule in rules for part in rule[1:] for m in re.findall(r"\{([A-Z]+)\}", part)}
    # templates stay as written and each name once: the helper fills in only its tool's rules
    # (it starts for every command the plugin runs: a small policy is a fast start)
    # groups: the root-owned file whose lines are the only sets snapshot-set makes
    return {"mount_base": mount_base, "snap_suffix": suffix, "key_dir": key_dir, "groups": DEFAULT_GROUPS,
            "devices": vals["DEV"], "names": {k: vals[k] for k in sorted(used)},
            "tools": {name: tools.path(name) for name in _tools(rules)}, "rules": rules}


def _tools(rules) -> list[str]:
    """The programs the rules run; the helper's own commands run theirs."""
    names = {rule[0] for rule in rules}
    if helper.SET in names:
        names = (names - {helper.SET}) | set(helper.SET_TOOLS)
    return sorted(names)


def admitted(argv, policy: dict) -> bool:
    """Do the helper's patterns admit this argv (bare tool name first)? Its path guards aside:
    those look at the disk."""
    try:
        helper.admit(policy, argv, guard=False)
    except helper.Refused:
        return False
    return True


def helper_source(policy: dict) -> str:
    """The helper's text with the compiled policy in place: one root-owned file is the whole
    of what the Amanda user may have run as root."""
    text = (pkgutil.get_data(__package__, "helper.py") or b"").decode()
    line = "POLICY = {}\n"
    if text.count(line) != 1:
        raise SnaplayersError("the helper's source has no single policy line")
    return text.replace(line, f"POLICY = {policy!r}\n")


def installed_policy(path: str) -> dict | None:
    """The policy compiled into the helper at path (what it admits), or None if none is there."""
    import ast
    try:
        with open(path) as f:
            line = next((ln for ln in f if ln.startswith("POLICY = ")), "")
        policy = ast.literal_eval(line[len("POLICY = "):])
    except (OSError, ValueError, SyntaxError):
        return None
    return policy if isinstance(policy, dict) and policy else None


def sudoers(user: str, path: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise BadInput(f"user {show(user)} is not a valid user name")
    check_path("helper", path)
    return (
        "# sudoers drop-in for snaplayers, written by `snaplayers install`; do not edit.\n"
        f"# {user} may run one program as root: the helper, which runs only the commands the\n"
        f"# layers declare, each argument checked whole (`{path} --check ARGV` tells).\n"
        # !use_pty: the helper talks over pipes and needs no terminal (sudo >= 1.9.14 makes one)
        f"Defaults!{path} !requiretty, !use_pty, env_reset\n"
        f"{user} ALL=(root) NOPASSWD: {path}\n")


def _write(path: str, text: str, mode: int) -> None:
    """Atomically, root's, in a root-owned directory."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".snaplayers.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.chown(tmp, 0, 0)
        if path.startswith("/etc/sudoers"):
            proc = subprocess.run([tools.path("visudo"), "-cf", tmp], capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                raise SnaplayersError(f"visudo rejects the sudoers file: {proc.stdout.strip()} "
                                      f"{proc.stderr.strip()}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def install(user: str, mount_base: str, suffix: str, key_dir: str, path: str | None = None,
            sudoers_file: str = SUDOERS) -> list[str]:
    """The helper, the mount base (root's; the Amanda user's group may read it) and the sudoers
    line. Returns what an admin should still know."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise BadInput(f"user {show(user)} does not exist") from None
    policy = compile_policy(mount_base, suffix, key_dir)
    path = path or HELPERS[-1]
    notes = []
    _write(path, helper_source(policy), 0o755)
    notes.append(f"installed {path} (root, 0755): the only command {user} may run through sudo")
    problem = helper.unsafe_dir(os.path.dirname(path))
    if problem:     # Debian's /usr/local is root:staff 2775: staff could replace what sudo runs
        notes.append(f"NOTE: {problem}: whoever can write there can replace the helper")
    if os.path.lexists(mount_base) and not os.path.isdir(mount_base) or os.path.islink(mount_base):
        raise SnaplayersError(f"mount base {mount_base} exists and is not a directory")
    os.makedirs(mount_base, mode=0o755, exist_ok=True)
    os.chown(mount_base, 0, account.pw_gid)
    os.chmod(mount_base, 0o750)
    problem = helper.unsafe_dir(mount_base)
    if problem:
        raise SnaplayersError(f"mount base {mount_base} is not safe: {problem}")
    group = grp.getgrgid(account.pw_gid).gr_name
    notes.append(f"mount base {mount_base}: root:{group} 0750 ({user} reads, only root mounts)")
    leftovers = [e for e in os.listdir(mount_base)
                 if os.lstat(os.path.join(mount_base, e)).st_uid != 0]
    if leftovers:
        notes.append(f"NOTE: {mount_base} holds entries not root's, which the helper will not "
                     f"mount on: {', '.join(sorted(leftovers))}; remove them")
    _write(sudoers_file, sudoers(user, path), 0o440)
    notes.append(f"wrote {sudoers_file} (checked with visudo)")
    if "disk" in {g.gr_name for g in grp.getgrall() if user in g.gr_mem} | {group if group == "disk" else ""}:
        notes.append(f"WARNING: {user} is in group disk, which can read and write every block "
                     "device whatever sudoers says. Unless a DLE dumps raw devices, or Amanda was "
                     f"built --with-group=disk (Zmanda's layout): gpasswd -d {user} disk")
    return notes
