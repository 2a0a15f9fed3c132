"""The device field: `<mount_base>/(lvm=<vg>+<lv>|raid1|part=<n>|vg=<vg>+<lv>|luks=<key>)[,...][/]`.

Parser and formatter live together so that parse(s).format() == s for every valid s.
"""

from __future__ import annotations

import posixpath
import re

from .errors import BadInput, show
from .record import Record

# LVM's own name rules (lvm2 lib/misc/lvm-string.c), minus '+', which is our vg/lv separator.
_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")
LV_RESERVED = ("_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage",
                "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata")
LV_RESERVED_PREFIX = ("snapshot", "pvmove")
_PATH = re.compile(r"/[A-Za-z0-9_.+/-]*\Z")
MAX_NAME = 127          # lvm2 NAME_LEN - 1
MAX_DM_NAME = 127       # DM_NAME_LEN - 1
MAX_COMPONENT = 255     # NAME_MAX: the encoded directory must be creatable
MAX_PARTITION = 128     # GPT's usual table size, and the kernel's DISK_MAX_PARTS is 256


class _VgLv(Record, frozen=True):
    vg: str
    lv: str
    kind = ""

    def token(self) -> str:
        return f"{self.kind}={self.vg}+{self.lv}"


class Lvm(_VgLv):
    kind = "lvm"
    syntax = "lvm=<vg>+<lv>"
    meaning = "the source, always first: a snapshot of logical volume <vg>/<lv>"


class Raid1(Record, frozen=True):
    kind = "raid1"
    syntax = "raid1"
    meaning = "the device below is one leg of an md RAID1: assemble it degraded"

    def token(self) -> str:
        return "raid1"


class Part(Record, frozen=True):
    number: int
    kind = "part"
    syntax = "part=<n>"
    meaning = f"partition <n> (1..{MAX_PARTITION}) of the device below"

    def token(self) -> str:
        return f"part={self.number}"


class Vg(_VgLv):
    kind = "vg"
    syntax = "vg=<vg>+<lv>"
    meaning = "the device below is the one PV of a guest's volume group <vg>: activate its LV <lv>"


class Luks(Record, frozen=True):
    key: str
    kind = "luks"
    syntax = "luks=<key>"
    meaning = "the device below is a LUKS1/LUKS2 container: open it with <key-dir>/<key>.key"

    def token(self) -> str:
        return f"luks={self.key}"


# every layer the grammar accepts: the refusal below and script-snaplayers --help list them
LAYERS = (Lvm, Raid1, Part, Vg, Luks)
GRAMMAR = f"<mount_base>/({'|'.join(layer.syntax for layer in LAYERS)})[,...]"
EXPECTED = ("expected " + ", ".join(layer.syntax for layer in LAYERS[:-1]) + " or "
            + LAYERS[-1].syntax)
# a key file's name under the key-dir property: no '/', never hidden, never '..'
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")


class DeviceSpec(Record, frozen=True):
    mount_base: str
    layers: tuple[object, ...]
    trailing_slash: bool = False

    @property
    def component(self) -> str:
        return ",".join(layer.token() for layer in self.layers)

    @property
    def mountpoint(self) -> str:
        return f"{self.mount_base}/{self.component}"

    @property
    def source(self) -> Lvm:
        return self.layers[0]

    def format(self) -> str:
        return self.mountpoint + ("/" if self.trailing_slash else "")


def check_path(what: str, value: str) -> str:
    """An absolute, normalised path of plain characters: no '..', no doubled or trailing '/'."""
    if not _PATH.match(value) or value == "/":
        raise BadInput(f"{what} {show(value)} must be an absolute path of [A-Za-z0-9_.+/-]")
    if posixpath.normpath(value) != value or "//" in value:
        raise BadInput(f"{what} {show(value)} is not a normalised path")
    if any(part in (".", "..") for part in value.split("/")):
        raise BadInput(f"{what} {show(value)} contains '.' or '..'")
    return value


def check_lvm_name(what: str, name: str, token: str) -> None:
    if not name:
        raise BadInput(f"token {show(token)}: empty {what} name")
    if len(name) > MAX_NAME:
        raise BadInput(f"token {show(token)}: {what} name longer than {MAX_NAME} characters")
    if name in (".", "..") or not _NAME.match(name):
        raise BadInput(f"token {show(token)}: {what} name {show(name)} breaks LVM's name rules")


def check_lv_name(name: str, token: str) -> None:
    check_lvm_name("LV", name, token)
    if name.startswith(LV_RESERVED_PREFIX) or any(r in name for r in LV_RESERVED):
        raise BadInput(f"token {show(token)}: LV name {show(name)} is reserved by LVM")


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name LVM gives vg/lv (dashes doubled)."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def _parse_token(token: str) -> object:
    if token == "raid1":
        return Raid1()
    key, eq, value = token.partition("=")
    if not eq:
        raise BadInput(f"unknown layer {show(token)}: {EXPECTED}")
    if key in ("lvm", "vg"):
        vg, plus, lv = value.partition("+")
        if not plus:
            raise BadInput(f"token {show(token)}: expected {key}=<vg>+<lv>")
        if "+" in lv:
            raise BadInput(f"token {show(token)}: a '+' in a VG or LV name cannot be encoded")
        check_lvm_name("VG", vg, token)
        check_lv_name(lv, token)
        return Lvm(vg, lv) if key == "lvm" else Vg(vg, lv)
    if key == "luks":
        if not _KEY.match(value):
            raise BadInput(f"token {show(token)}: key name must be 1-64 characters of "
                           "[A-Za-z0-9_.-], not starting with '.' or '-'")
        return Luks(value)
    if key == "part":
        if not re.fullmatch(r"[1-9][0-9]{0,2}", value) or int(value) > MAX_PARTITION:
            raise BadInput(f"token {show(token)}: partition number must be 1..{MAX_PARTITION}")
        return Part(int(value))
    raise BadInput(f"unknown layer {show(token)}: {EXPECTED}")


def _check_order(layers) -> None:
    """The first layer is the one source; no kind follows itself; one md and one guest VG per
    stack (each is named after the DLE alone)."""
    if not isinstance(layers[0], Lvm):
        raise BadInput(f"layer {show(layers[0].token())} cannot come first: the first layer "
                       "must be a source (lvm=<vg>+<lv>)")
    for below, layer in zip(layers, layers[1:]):
        if isinstance(layer, Lvm):
            raise BadInput(f"layer {show(layer.token())}: only one source layer, and it comes first")
        if layer.kind == below.kind:
            raise BadInput(f"layer {show(layer.token())} directly on {show(below.token())}: "
                           "duplicate layer")
    if sum(isinstance(layer, Raid1) for layer in layers) > 1:
        raise BadInput("duplicate layer 'raid1': one md array per stack")
    guest_vgs = [layer for layer in layers if isinstance(layer, Vg)]
    if len(guest_vgs) > 1:
        raise BadInput(f"duplicate layer {show(guest_vgs[1].token())}: one guest VG per stack")


def parse(device: str, mount_base: str | None = None) -> DeviceSpec:
    """Parse and validate a device field. mount_base defaults to the field's parent directory."""
    if not isinstance(device, str) or device == "":
        raise BadInput("empty device field")
    if len(device) > 4096 or not device.isascii() or not device.isprintable():
        raise BadInput(f"device {show(device)} has non-printable, non-ASCII or too many characters")
    trailing = device.endswith("/") and len(device) > 1
    body = device[:-1] if trailing else device
    base = posixpath.dirname(body) if mount_base is None else mount_base
    check_path("mount base", base)
    if body == base:
        raise BadInput(f"device {show(device)} names no layers after the mount base")
    if not body.startswith(base + "/"):
        raise BadInput(f"device {show(device)} does not start with mount base {show(base)}/")
    component = body[len(base) + 1:]
    if "/" in component:
        raise BadInput(f"device {show(device)}: {show(component)} must be a single directory "
                       f"directly under {show(base)}")
    if component in ("", ".", ".."):
        raise BadInput(f"device {show(device)} names no layers")
    if "" in component.split(","):
        raise BadInput(f"device {show(device)}: empty layer token (doubled or trailing ',')")
    layers = tuple(_parse_token(token) for token in component.split(","))
    _check_order(layers)
    if len(component) > MAX_COMPONENT:
        raise BadInput(f"device {show(device)}: the layer list is longer than {MAX_COMPONENT} "
                       "characters, too long for a directory name")
    return DeviceSpec(base, layers, trailing)

