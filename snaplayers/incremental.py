"""Dates the GNU tar listed-incremental files a dump wrote back to the moment of its snapshot.

GNU tar records in its listed-incremental (snapshot) file the time tar started, and the next
incremental skips every file whose mtime is older. A file the VM changed after the snapshot
was taken but before tar started went into this dump with its old content (the snapshot's),
yet is older than that time: the next incremental would skip it, and its new content would
wait for the next full dump. Dating the file at the snapshot's start, less a margin for the
clock skew between the VM that stamps mtimes and this host, makes the next incremental take it.

Only GNU tar's format 2 (tar >= 1.20) is rewritten, only ever to an earlier time, and only a
regular file of the caller's own that this dump wrote; anything else is left as it is with one
line in the debug log: the dump itself is good either way.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat

from . import log as debug_log
from .journal import replace_whole

log = debug_log.get("snaplayers.incremental")

# format 2: "GNU tar-<version>-2\n", then the time tar started: "<seconds>\0<nanoseconds>\0"
_FORMAT_2 = re.compile(rb"(GNU tar-[^\n\0]{1,64}-2\n)(-?[0-9]{1,20})\0([0-9]{1,9})\0")


def sanitise(disk: str) -> str:
    """Amanda's sanitise_filename (common-src/file.c): '/', ':' and '\\' become '_'."""
    return re.sub(r"[/:\\]", "_", disk)


def listed_incremental(listdir: str, host: str, disk: str, level: int) -> str | None:
    """The file amgtar and the GNUTAR program keep for one level of a DLE:
    <gnutar-listdir>/<host><sanitised disk>_<level>; None if host makes it no file name."""
    name = f"{host}{sanitise(disk)}_{level}"
    if "/" in name or "\0" in name:      # Amanda does not sanitise the host
        return None
    return f"{listdir}/{name}"


def date_back(listdir: str, host: str | None, disk: str, levels: list[int], started: float,
              margin: int) -> list[str]:
    """Date each level's file this dump wrote at started - margin, if it says later; returns
    the files rewritten."""
    if isinstance(started, bool) or not isinstance(started, (int, float)) \
            or not math.isfinite(started):
        log.info("the journal's start %r is no time: the listed-incremental files are left as "
                 "they are", started)
        return []
    if not host:
        log.info("no --host: the listed-incremental files cannot be named; left as they are")
        return []
    if not levels:
        log.info("no --level: no listed-incremental file to date")
        return []
    dated = []
    for level in levels:
        path = listed_incremental(listdir, host, disk, level)
        if path is None:
            log.info("host %r makes no listed-incremental file name; left as it is", host)
        elif lower(path, started, margin):
            dated.append(path)
    return dated


def lower(path: str, started: float, margin: int) -> bool:
    """Date one listed-incremental file at started - margin if it says later (True if it was
    rewritten). Never raises for the file: it logs why it left it."""
    try:
        return _lower(path, started, margin)
    except OSError as err:
        log.info("listed-incremental %s left as it is: %s", path, err)
        return False


def _lower(path: str, started: float, margin: int) -> bool:
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang the call
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        log.info("no listed-incremental file %s (not a tar dump, or record no): nothing to date",
                 path)
        return False
    except OSError as err:
        if err.errno == errno.ELOOP:
            log.info("listed-incremental %s is a symbolic link: refused", path)
            return False
        raise
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or before.st_uid != os.geteuid():
            log.info("listed-incremental %s is not a regular file of uid %d: refused", path,
                     os.geteuid())
            return False
        if before.st_mtime < started:
            log.info("listed-incremental %s was not written by this dump (its mtime %.0f is "
                     "before the snapshot at %.0f): left as it is", path, before.st_mtime, started)
            return False
        data = _read_all(fd)
    finally:
        os.close(fd)

    header = _FORMAT_2.match(data)
    if header is None:
        log.info("listed-incremental %s is not GNU tar's format 2 (it begins %r): left as it is",
                 path, data[:32])
        return False
    recorded = (int(header[2]), int(header[3]))
    wanted = max(0, math.floor(started) - margin)
    if (wanted, 0) >= recorded:
        log.info("listed-incremental %s says %d.%09d, not after %d: left as it is", path,
                 *recorded, wanted)
        return False
    _replace(path, before, header[1] + b"%d\0%d\0" % (wanted, 0) + data[header.end():])
    log.info("listed-incremental %s dated %d (tar started at %d.%09d; snapshot at %.3f, "
             "incremental-margin %d s)", path, wanted, *recorded, started, margin)
    return True


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _replace(path: str, before: os.stat_result, data: bytes) -> None:
    """Renamed over the original, with its mode and group, if that is still the file read."""
    def unchanged():
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise OSError(f"{path} was replaced while it was read")
    replace_whole(path, data, stat.S_IMODE(before.st_mode), before.st_gid, unchanged)
