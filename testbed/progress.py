"""Long steps say what they do, how long they took, and whether a cache answered them."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import List, Tuple


class Steps:
    def __init__(self, title: str, out=sys.stderr):
        self.title = title
        self.out = out
        self.start = time.monotonic()
        self.rows: List[Tuple[str, float, str]] = []

    def say(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.start:6.1f}s] {text}\n")
        self.out.flush()

    @contextlib.contextmanager
    def step(self, name: str, cached: bool = False):
        """Yields a dict; set ['how'] to say 'cached', 'built', 'skipped' ..."""
        info = {"how": "cached" if cached else "built"}
        self.say(f"{name}: {'cached' if cached else 'working'} ...")
        t0 = time.monotonic()
        try:
            yield info
        except BaseException:
            self.rows.append((name, time.monotonic() - t0, "FAILED"))
            self.say(f"{name}: FAILED after {time.monotonic() - t0:.1f}s")
            raise
        took = time.monotonic() - t0
        self.rows.append((name, took, info["how"]))
        self.say(f"{name}: {info['how']} in {took:.1f}s")

    def summary(self) -> str:
        width = max([len(r[0]) for r in self.rows] + [4])
        lines = [f"{self.title}", f"  {'step':<{width}}  {'seconds':>8}  how"]
        lines += [f"  {name:<{width}}  {secs:8.1f}  {how}" for name, secs, how in self.rows]
        lines.append(f"  {'total':<{width}}  {time.monotonic() - self.start:8.1f}")
        return "\n".join(lines)
