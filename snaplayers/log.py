"""One debug log per call, in the style of Amanda's client debug files.

Not the `logging` package: a plugin call writes one file from one process, and importing
`logging` cost 125 ms of each call under TCG (-X importtime; natively within the noise).
"""

from __future__ import annotations

import os
import time

_sink = {"file": None}


class Log:
    """The few calls the plugin makes, with logging's %-style arguments."""

    def __init__(self, name: str):
        self.name = name

    def info(self, message: str, *args) -> None:
        _write(self.name, message, args)

    error = info


def get(name: str) -> Log:
    return Log(name)


def _write(name: str, message: str, args: tuple) -> None:
    f = _sink["file"]
    if f is None:                   # no log started (bad input, or a test): nothing to keep
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    f.write(f"{stamp}.{int(now % 1 * 1000):03d} {os.getpid()} {name}: {message % args if args else message}\n")
    f.flush()                       # a killed call keeps every line it wrote


def started() -> bool:
    return _sink["file"] is not None


def start(log_dir: str, program: str) -> str:
    """Open this call's file under log_dir; returns its path ('' if it cannot be written: a
    log that cannot be written must not fail a backup)."""
    name = f"{program}.{time.strftime('%Y%m%d%H%M%S')}.{os.getpid()}.debug"
    path = os.path.join(log_dir, name)
    try:
        os.makedirs(log_dir, mode=0o750, exist_ok=True)
        f = open(path, "a", encoding="utf-8", errors="replace")
    except OSError:
        return ""
    if _sink["file"] is not None:   # tests run many calls in one process
        _sink["file"].close()
    _sink["file"] = f
    return path
