"""One debug log per call, in the style of Amanda's client debug files."""

from __future__ import annotations

import logging
import os
import time

FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(name)s: %(message)s"


def start(log_dir: str, program: str, debug: bool) -> str:
    """Attach a file handler under log_dir; returns the file's path ('' if it cannot be
    written: a log that cannot be written must not fail a backup)."""
    root = logging.getLogger("snaplayers")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    name = f"{program}.{time.strftime('%Y%m%d%H%M%S')}.{os.getpid()}.debug"
    path = os.path.join(log_dir, name)
    try:
        os.makedirs(log_dir, mode=0o750, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError:
        return ""
    handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    return path
