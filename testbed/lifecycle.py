"""molecule's test sequence for one testbed: destroy, create, converge, verify, destroy on failure.

The CLI, the pytest fixture and the benchmark all bring testbeds up and down by it."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from .fixture import Testbed
from .run import TestbedError


class Lifecycle:
    """up(): destroy each of `first` (leftovers a run before may have left: the testbed's own
    prefix, or the one a journal names), then `record` (a journal written before anything of the
    testbed exists, so that an interrupted run is found and destroyed), then create, converge and
    verify. On any failure, `failed` is told, the testbed is destroyed and the error goes on.
    down(): destroy, once; returns what is still there (the leak check).

    What each step guarantees is in its docstring in fixture/__init__.py: destroy runs on any state;
    create and converge run once, on what the step before made; verify changes nothing."""

    def __init__(self, testbed: Testbed, first: Sequence[Testbed] = (),
                 record: Optional[Callable[[], None]] = None,
                 failed: Optional[Callable[[Testbed], None]] = None):
        self.testbed = testbed
        self.first = list(first)
        self.record = record
        self.failed = failed
        self.destroyed = False
        self.left: Optional[dict] = None    # what destroy found still there

    def up(self) -> Testbed:
        for old in self.first:
            try:
                old.destroy()
            except TestbedError as err:     # a half-gone leftover: create below says if it matters
                old.steps.say(f"destroy {old.prefix} (a leftover): {err}")
        if self.record:
            self.record()
        tb = self.testbed
        try:
            tb.create()
            tb.converge()
            tb.verify()
        except BaseException:
            if self.failed:
                self.failed(tb)
            self.down()
            raise
        return tb

    def down(self) -> Optional[dict]:
        """Destroys the testbed, once: after a failed up(), only returns what that destroy found
        (None if it failed itself)."""
        if not self.destroyed:
            self.destroyed = True
            self.left = self.testbed.destroy()
        return self.left
