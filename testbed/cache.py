"""Artifacts under $XDG_CACHE_HOME/snaplayers-testbed, keyed by a hash of their inputs.

An artifact is complete only when its `.done` marker exists: a half-written one (an
interrupted build) is found and rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from typing import Iterator


def root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "snaplayers-testbed")


def key(*inputs) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(*paths: str) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


class Artifact:
    def __init__(self, kind: str, digest: str):
        self.dir = os.path.join(root(), kind, digest)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def done(self) -> bool:
        return os.path.exists(self.path(".done"))

    @contextlib.contextmanager
    def building(self) -> Iterator["Artifact"]:
        """Start from an empty folder; mark it done only if the body finishes."""
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        try:
            yield self
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        with open(self.path(".done"), "w"):
            pass


@contextlib.contextmanager
def lock(name: str) -> Iterator[None]:
    os.makedirs(root(), exist_ok=True)
    fd = os.open(os.path.join(root(), f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
