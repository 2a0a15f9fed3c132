"""Properties (Amanda's `property "NAME" "value"`, arriving as `--name value`) and their checks."""

from __future__ import annotations

import re

from . import device as devicefield
from .errors import BadInput, show
from .record import Record

DEFAULT_STATE_DIR = "/var/lib/amanda/snaplayers"
DEFAULT_LOG_DIR = "/var/log/amanda/snaplayers"
DEFAULT_SUFFIX = ".amsnap"
DEFAULT_SIZE = "20%ORIGIN"
DEFAULT_STALE_SECONDS = 43200   # a nightly dump of a large DLE can take hours
DEFAULT_GROUPS = "/etc/snaplayers/groups"   # root's: which LVs hold one instant (snaplayers.group)
DEFAULT_KEY_DIR = "/etc/snaplayers/keys"   # luks=<key> opens with <key-dir>/<key>.key, read by root
DEFAULT_GNUTAR_LISTDIR = "/var/lib/amanda/gnutar-lists"     # Debian's and Zmanda's gnutar-list-dir
DEFAULT_INCREMENTAL_MARGIN = 300    # clock skew between the VM that stamps mtimes and this host

SIZE = r"[1-9][0-9]{0,15}(?:\.[0-9]{1,3})?[bBsSkKmMgGtTpPeE]?"     # an LVM size: 50M, 1.5G
EXTENTS = r"(?:100|[1-9][0-9]?)%ORIGIN"
_SIZE = re.compile(f"(?:{SIZE}|{EXTENTS})\\Z")
# starts with '.': LVM's own names for what it makes add '_' (_tdata, _rimage_0) or, in dm
# names, '-' (-real, -cow, -tpool); the reserved words are refused inside it too
_SUFFIX = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9_.]{0,30}\Z")
_BOOL = {"yes": True, "true": True, "on": True, "1": True,
         "no": False, "false": False, "off": False, "0": False}


def option_name(flag: str) -> str:
    """`--Mount_Base` -> `mount-base`: Amanda lower-cases names and turns '_' into '-'."""
    return flag[2:].lower().replace("_", "-")


def boolean(name: str, value: str) -> bool:
    try:
        return _BOOL[value.lower()]
    except KeyError:
        raise BadInput(f"property {name} {show(value)} must be yes or no") from None


class Settings(Record):
    """Everything a stack needs to know besides the device field; validated on construction."""

    mount_base: str
    snap_suffix: str = DEFAULT_SUFFIX
    size: str = DEFAULT_SIZE
    stale_seconds: int = DEFAULT_STALE_SECONDS
    state_dir: str = DEFAULT_STATE_DIR
    log_dir: str = DEFAULT_LOG_DIR
    key_dir: str = DEFAULT_KEY_DIR
    groups: str = DEFAULT_GROUPS
    gnutar_listdir: str = DEFAULT_GNUTAR_LISTDIR
    incremental_margin: int = DEFAULT_INCREMENTAL_MARGIN
    sudo: str = "auto"
    recovery: bool = True       # False mounts with noload/norecovery: an explicit opt-in only
    debug: bool = False

    def __post_init__(self):
        devicefield.check_path("mount-base", self.mount_base)
        devicefield.check_path("state-dir", self.state_dir)
        devicefield.check_path("log-dir", self.log_dir)
        devicefield.check_path("key-dir", self.key_dir)
        devicefield.check_path("groups", self.groups)
        devicefield.check_path("gnutar-listdir", self.gnutar_listdir)
        check_suffix(self.snap_suffix)
        if not _SIZE.match(self.size):
            raise BadInput(f"property size {show(self.size)} must be an LVM size (50M, 1.5G) "
                           "or N%ORIGIN")
        if self.sudo not in ("auto", "yes", "no"):
            raise BadInput(f"property sudo {show(self.sudo)} must be auto, yes or no")
        for name, value in (("stale-seconds", self.stale_seconds),
                            ("incremental-margin", self.incremental_margin)):
            if not isinstance(value, int) or value < 0:
                raise BadInput(f"property {name} {show(str(value))} must be a whole number of "
                               "seconds")

    def check_device(self, spec: devicefield.DeviceSpec) -> None:
        """Names the stack will create must be valid too: <lv><suffix> and its dm names."""
        if spec.mount_base != self.mount_base:
            raise BadInput(f"device {show(spec.format())} is not under mount-base "
                           f"{show(self.mount_base)}")
        src = spec.source
        snap = src.lv + self.snap_suffix
        token = src.token()
        devicefield.check_lv_name(snap, token)
        if src.lv.endswith(self.snap_suffix):
            raise BadInput(f"token {show(token)}: {show(src.lv)} ends in the snapshot suffix "
                           f"{show(self.snap_suffix)}; back up its origin instead")
        if len(devicefield.dm_name(src.vg, snap)) + len("-cow") > devicefield.MAX_DM_NAME:
            raise BadInput(f"token {show(token)}: the snapshot's device-mapper name would be "
                           f"longer than {devicefield.MAX_DM_NAME} characters")
        for layer in spec.layers:
            # the guest VG is renamed to snaplayers_<id>: its LV's mapping must fit
            if layer.kind == "vg" and len(devicefield.dm_name("snaplayers_0123456789ab", layer.lv)) \
                    > devicefield.MAX_DM_NAME:
                raise BadInput(f"token {show(layer.token())}: the LV's device-mapper name would "
                               f"be longer than {devicefield.MAX_DM_NAME} characters")


def check_suffix(suffix: str) -> str:
    if not _SUFFIX.match(suffix) or any(r in suffix for r in devicefield.LV_RESERVED):
        raise BadInput(f"property snap-suffix {show(suffix)} must be '.' and 1-31 characters of "
                       "[A-Za-z0-9_.], without a name LVM reserves (_tdata, _rimage, ...)")
    return suffix


def _seconds(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise BadInput(f"property {name} {show(value)} must be a whole number of seconds")
    return int(value)


def _text(name: str, value: str) -> str:
    return value


class Property(Record, frozen=True):
    """A property: the Settings field it sets, how its value is read, and what it is for."""

    field: str
    convert: object
    meaning: str


# The one list of properties: settings_from reads it, script-snaplayers --help prints it with
# each Settings default.
PROPERTIES = {
    "mount-base": Property("mount_base", _text, "the root-owned directory the stacks are mounted "
                                                "under; every device field starts with it"),
    "snap-suffix": Property("snap_suffix", _text, "added to the origin LV's name to name its "
                                                  "snapshot"),
    "size": Property("size", _text, "the snapshot's size: an LVM size (50M, 1.5G) or "
                                    "N%ORIGIN; a thin origin needs none"),
    "stale-seconds": Property("stale_seconds", _seconds,
                              "a leftover stack younger than this, whose Amanda process runs or "
                              "cannot be checked, is refused as busy; an older one is torn down"),
    "state-dir": Property("state_dir", _text, "where each DLE's journal and lock are kept"),
    "log-dir": Property("log_dir", _text, "one debug file per call: every command, its exit "
                                          "status, duration and stderr"),
    "key-dir": Property("key_dir", _text, "luks=<key> opens with <key-dir>/<key>.key "
                                          "(readable by root only)"),
    "groups": Property("groups", _text, "a root-owned file, one group per line: a name, then "
                                        "the device fields of DLEs whose LVs are snapshotted at "
                                        "one instant (a VM's disks)"),
    "gnutar-listdir": Property("gnutar_listdir", _text,
                               "the client's gnutar-list-dir (or amgtar's GNUTAR-LISTDIR): "
                               "where the listed-incremental files to date back are"),
    "incremental-margin": Property("incremental_margin", _seconds,
                                   "a dump's listed-incremental files are dated this many "
                                   "seconds before its snapshot, so the next incremental takes "
                                   "what changed before tar started; covers the clock skew "
                                   "between the VMs that stamp mtimes and this host"),
    "sudo": Property("sudo", lambda n, v: v.lower(), "run commands through sudo -n and the "
                                                    "helper: auto (unless root), yes or no"),
    "recovery": Property("recovery", boolean, "NO mounts with noload/norecovery: the "
                                              "journal is not replayed into the snapshot"),
    "debug": Property("debug", boolean, "YES adds each command's standard output to the debug "
                                        "file"),
}


def default(prop: Property) -> str | None:
    """The Settings default as an amanda.conf value would spell it; None if it is required."""
    value = getattr(Settings, prop.field, None)
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return None if value is None else str(value)


def settings_from(props: dict[str, str]) -> Settings:
    """Build Settings from `--name value` pairs already split by the caller."""
    values: dict[str, object] = {}
    for name, value in props.items():
        if name not in PROPERTIES:
            raise BadInput(f"unknown option --{name}")
        prop = PROPERTIES[name]
        values[prop.field] = prop.convert(name, value)
    if "mount_base" not in values:
        raise BadInput("missing required property mount-base (property \"mount-base\" \"/v/amsnap\")")
    return Settings(**values)


class Call(Record):
    """One Amanda Script API call, as argv delivered it."""

    command: str
    execute_where: str | None = None
    config: str | None = None
    host: str | None = None
    disk: str | None = None
    device: str | None = None
    timestamp: str | None = None
    levels: list[int] = []
    outcome: str | None = None     # success / failed, from newer Amanda's post calls
    properties: dict[str, str] = {}


_STANDARD = ("execute-where", "config", "host", "disk", "device", "timestamp")
_FLAGS = ("success", "failed")


def parse_call(argv: list[str]) -> Call:
    """`COMMAND --opt value ...`; commands in either case, options in '-' or '_' spelling."""
    if not argv:
        raise BadInput("no command given (expected support, PRE-DLE-BACKUP, ...; --help lists "
                       "them)")
    command = argv[0]
    if not re.fullmatch(r"[A-Za-z][A-Za-z-]{0,40}", command):
        raise BadInput(f"bad command {show(command)}")
    call = Call(command=command.upper())
    i = 1
    while i < len(argv):
        flag = argv[i]
        if not flag.startswith("--") or len(flag) < 3:
            raise BadInput(f"unexpected argument {show(flag)}")
        name = option_name(flag)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name):
            raise BadInput(f"unknown option {show(flag)}")
        if name in _FLAGS:
            call.outcome = name
            # tolerate a value after the flag, as some Amanda versions may send one
            i += 2 if i + 1 < len(argv) and not argv[i + 1].startswith("--") else 1
            continue
        if i + 1 >= len(argv):
            raise BadInput(f"option {show(flag)} needs a value")
        value = argv[i + 1]
        i += 2
        if name == "level":
            if not re.fullmatch(r"[0-9]{1,2}", value):
                raise BadInput(f"option --level {show(value)} must be 0..99")
            call.levels.append(int(value))
        elif name in _STANDARD:
            setattr(call, name.replace("-", "_"), value)
        else:
            if name in call.properties:
                raise BadInput(f"property {name} given twice")
            call.properties[name] = value
    return call
