"""A sudoers drop-in generated from the argv templates the layers declare (`privileged`).

sudo >= 1.9.10 matches arguments against a regular expression when they are written as
`^...$`: each argument class below then admits exactly the names snaplayers creates. Older
sudo (Debian bullseye's 1.9.5) only has wildcards, where `*` also matches spaces and so extra
arguments; that syntax is generated only on request and says so in its header.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

from . import tools
from .device import check_path
from .errors import BadInput, show
from .layers import registry
from .layers.mount import OPTIONS
from .props import DEFAULT_KEY_DIR

DMNAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"          # a device-mapper name as LVM forms it
NAME = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"            # LVM's name rules, without '+'
ID = r"[0-9a-f]{12}"


def ere_escape(text: str) -> str:
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", text)


def _lvm_regex_form(regex: str) -> str:
    """What a device regex becomes inside LVM's own filter regex, where the vg layer writes
    '.' and '+' as [.] and [+] (see layers/vg.py): literal dots and pluses, and the two in
    name classes, may each appear as such a class."""
    regex = regex.replace(r"\.", r"\[\.\]").replace(r"\+", r"\[\+\]")
    return regex.replace("[A-Za-z0-9_.+-]*", r"([A-Za-z0-9_-]|\[[.+]\])*")


def placeholders(mount_base: str, suffix: str, key_dir: str = DEFAULT_KEY_DIR) -> dict[str, str]:
    snapdev = f"/dev/mapper/{DMNAME}{ere_escape(suffix)}"
    mapname = f"snaplayers-{ID}-[0-9]{{1,2}}p[0-9]{{1,3}}"
    cryptname = f"snaplayers-{ID}-[0-9]{{1,2}}c"
    mapdev, cryptdev = f"/dev/mapper/{mapname}", f"/dev/mapper/{cryptname}"
    md = f"/dev/md/snaplayers-{ID}"
    clone = f"snaplayers_{ID}"
    lvdev = f"/dev/mapper/{clone}-{DMNAME}"       # an LV of a guest VG, renamed to our clone
    dev = f"({snapdev}|{mapdev}|{cryptdev}|{md}|{lvdev})"
    lvmconf = (ere_escape('devices/global_filter=["a|^') + "{D}"
               + ere_escape('$|","r|.*|"] devices/filter=["a|.*|"] devices/scan_lvs=1 '
                            'devices/use_devicesfile=0 devices/hints="none" backup/backup=0 '
                            'backup/archive=0'))
    return {
        "VG": NAME, "LV": NAME, "SUFFIX": ere_escape(suffix),
        "SIZE": r"[0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE]?", "EXTENTS": r"[0-9]{1,3}%ORIGIN",
        # only devices that root alone can name: never /dev/<vg>/ (a user could make /dev/shm/x)
        "DEV": dev,
        "MEMBER": f"({snapdev}|{mapdev}|{cryptdev}|{lvdev})",   # an md leg or a filesystem
        "PARTOF": f"({snapdev}|{md}|{cryptdev}|{lvdev})",        # a partition table
        "MD": md,
        "MAPNAME": mapname,
        "CRYPTNAME": cryptname,
        "CLONEVG": clone,
        # the one device LVM may see; the same device as the argument after it
        "LVMCONF": lvmconf.replace("{D}", _lvm_regex_form(dev)),
        "KEYFILE": ere_escape(key_dir) + r"/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\.key",
        "UUID": r"[0-9a-f]{8}(:[0-9a-f]{8}){3}",
        "FSTYPE": "(" + "|".join(sorted(OPTIONS)) + ")",
        "MOUNTOPTS": "(" + "|".join(sorted({o for pair in OPTIONS.values() for o in pair})) + ")",
        # the encoded directory always starts with the source token, so never '.' or '..'
        "MOUNTPOINT": ere_escape(mount_base) + r"/lvm=[A-Za-z0-9_.+=,-]+",
    }


def rules(mount_base: str, suffix: str, key_dir: str = DEFAULT_KEY_DIR) -> list[tuple[str, str]]:
    """(absolute command path, anchored ERE over the joined arguments) for every template."""
    values = placeholders(mount_base, suffix, key_dir)
    out = []
    for cls in registry().values():
        for template in cls.privileged:
            args = " ".join(re.sub(r"\{([A-Z]+)\}", lambda m: values[m.group(1)], part)
                            for part in template[1:])
            out.append((tools.path(template[0]), f"^{args}$"))
    return out


def matches(argv: Sequence[str], mount_base: str, suffix: str,
            key_dir: str = DEFAULT_KEY_DIR) -> bool:
    """Would the regex rules let this argv run? sudo joins the arguments with single spaces
    and matches the anchored expression against that string."""
    joined = " ".join(argv[1:])
    return any(argv[0] == cmd and re.fullmatch(rx[1:-1], joined)
               for cmd, rx in rules(mount_base, suffix, key_dir))


def _sudoers_escape(arg: str) -> str:
    # sudoers needs these escaped inside a command's arguments; a regex never sees the '\'
    return re.sub(r"([,:=!])", r"\\\1", arg)


def _glob(word: str) -> str | None:
    """The word as a glob that matches exactly what the regex does, if it can be: fixed-width
    hex runs become character classes, which (unlike '*') never match a space."""
    glob = re.sub(r"\[0-9a-f\]\{(\d+)\}", lambda m: "[0-9a-f]" * int(m.group(1)), word)
    return None if re.search(r"[()*+?{}|^$\\]", glob) else glob


def _wildcard(regex: str) -> str:
    """A regex rule weakened to sudo's wildcards: every run that no glob can say exactly
    becomes '*'."""
    words = []
    for word in regex[1:-1].split(" "):
        literal = not re.search(r"[\[\]()*+?{}|^$\\]", word)
        words.append(word if literal else (_glob(word) or "*"))
    collapsed: list[str] = []
    for word in words:
        if not (word == "*" and collapsed and collapsed[-1] == "*"):
            collapsed.append(word)
    return " ".join(collapsed)


def sudo_supports_regex() -> bool:
    try:
        out = subprocess.run([tools.path("sudo"), "-V"], capture_output=True, text=True,
                             check=False, stdin=subprocess.DEVNULL).stdout
    except OSError:
        return True             # no sudo here: generate for a current one
    m = re.search(r"Sudo version (\d+)\.(\d+)\.(\d+)", out)
    return not m or tuple(map(int, m.groups())) >= (1, 9, 10)


def generate(user: str, mount_base: str, suffix: str, syntax: str = "auto",
             key_dir: str = DEFAULT_KEY_DIR) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise BadInput(f"user {show(user)} is not a valid user name")
    check_path("mount-base", mount_base)
    check_path("key-dir", key_dir)
    from .props import _SUFFIX
    if not _SUFFIX.match(suffix):
        raise BadInput(f"snap-suffix {show(suffix)} must be 2-32 characters of [A-Za-z0-9_.+-]")
    if syntax == "auto":
        syntax = "regex" if sudo_supports_regex() else "wildcard"
    if syntax not in ("regex", "wildcard"):
        raise BadInput(f"syntax {show(syntax)} must be auto, regex or wildcard")
    lines = [
        "# sudoers drop-in for snaplayers, generated by `snaplayers sudoers`; do not edit.",
        f"# user {user}, mount base {mount_base}, snapshot suffix {suffix}, key dir {key_dir}, "
        f"{syntax} syntax.",
        "# Install: snaplayers sudoers ... > /etc/sudoers.d/snaplayers; chmod 0440; visudo -cf",
    ]
    if syntax == "wildcard":
        lines.append("# WARNING: this sudo has no regular expressions: '*' also matches spaces, "
                     "so these rules admit extra arguments. Upgrade sudo to >= 1.9.10.")
    alias = f"SNAPLAYERS_{re.sub(r'[^A-Z0-9]', '_', user.upper())}"
    cmnds = []
    for cmd, rx in rules(mount_base, suffix, key_dir):
        args = rx if syntax == "regex" else _wildcard(rx)
        cmnds.append(f"{cmd} {_sudoers_escape(args)}")
    lines.append(f"Cmnd_Alias {alias} = \\")
    lines.append(", \\\n".join(f"    {c}" for c in cmnds))
    lines.append(f"Defaults!{alias} !requiretty, env_reset")
    lines.append(f"{user} ALL=(root) NOPASSWD: {alias}")
    return "\n".join(lines) + "\n"
