"""Which Docker engine holds the testbed: chosen by probing, never by guessing.

A local engine (DOCKER_HOST or the local socket, remote ones alike) is used when a privileged
probe container shows its kernel has, or can load, everything the stack needs; otherwise the VM
engine boots a Debian kernel that does. TESTBED_ENGINE=local|vm forces the choice.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple, Union

from ..run import TestbedError

FEATURES = ("loop", "dm", "dm_snapshot", "md_raid1", "lio", "lio_iscsi", "iscsi_tcp")

Probe = Union[None, str, Dict[str, bool]]   # no engine / why the probe failed / feature table


def choose(env: Dict[str, str], probe_local: Callable[[], Probe]) -> Tuple[str, str]:
    forced = env.get("TESTBED_ENGINE", "")
    if forced in ("local", "vm"):
        return forced, f"TESTBED_ENGINE={forced}"
    if forced:
        raise TestbedError(f"TESTBED_ENGINE={forced!r}: use local or vm")
    found = probe_local()
    where = env.get("DOCKER_HOST") or "the local socket"
    if found is None:
        return "vm", f"no Docker engine answers at {where}"
    if isinstance(found, str):
        return "vm", f"the engine at {where} cannot run a privileged probe ({found})"
    missing = [f for f in FEATURES if not found.get(f)]
    if missing:
        return "vm", f"the kernel of the engine at {where} lacks {', '.join(missing)}"
    return "local", f"the kernel of the engine at {where} has {', '.join(FEATURES)}"


def engine(kernel: str = "6.1", steps=None, env: Optional[Dict[str, str]] = None):
    """The engine to use, and why (printed by every command that starts one)."""
    from .local import LocalEngine, probe
    from .vm import VmEngine
    env = dict(os.environ) if env is None else env
    kind, why = choose(env, lambda: probe(steps))
    if steps is not None:
        steps.say(f"engine: {kind} ({why})")
    return (LocalEngine(steps) if kind == "local" else VmEngine(kernel, steps)), why
