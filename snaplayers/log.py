"""One debug log per call, in the style of Amanda's client debug files."""

from __future__ import annotations

import logging
import os
import time

FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(name)s: %(message)s"
ROOT = "snaplayers"             # every logger of the plugin is below it


class _CallFile(logging.FileHandler):
    """This call's file; logging flushes after each record, so a killed call keeps every line."""

    def handleError(self, record):
        pass                    # a log that cannot be written must not fail a backup


def get(name: str) -> logging.Logger:
    return logging.getLogger(name)


def started() -> bool:
    return any(isinstance(h, _CallFile) for h in logging.getLogger(ROOT).handlers)


def start(log_dir: str, program: str) -> str:
    """Open this call's file under log_dir; returns its path ('' if it cannot be written: a
    log that cannot be written must not fail a backup)."""
    root = logging.getLogger(ROOT)
    for earlier in [h for h in root.handlers if isinstance(h, _CallFile)]:
        root.removeHandler(earlier)     # tests run many calls in one process
        earlier.close()
    name = f"{program}.{time.strftime('%Y%m%d%H%M%S')}.{os.getpid()}.debug"
    path = os.path.join(log_dir, name)
    try:
        os.makedirs(log_dir, mode=0o750, exist_ok=True)
        handler = _CallFile(path, encoding="utf-8", errors="replace")
    except OSError:
        return ""
    handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path
