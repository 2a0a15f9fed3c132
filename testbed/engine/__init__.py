"""Which Docker engine holds the testbed: chosen by probing, never by guessing.

A local engine (DOCKER_HOST or the local socket, remote ones alike) is used when a privileged
probe container shows its kernel has, or can load, everything the stack needs; otherwise the VM
engine boots a Debian kernel that does. TESTBED_ENGINE=local|vm forces the choice.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple, Union

from ..config import Config
from ..run import TestbedError

FEATURES = ("loop", "dm", "dm_snapshot", "dm_thin_pool", "md_raid1", "lio", "lio_iscsi", "iscsi_tcp")

Probe = Union[None, str, Dict[str, bool]]   # no engine / why the probe failed / feature table


def choose(forced: str, probe_local: Callable[[], Probe], docker_host: Optional[str] = None) -> Tuple[str, str]:
    """forced: TESTBED_ENGINE's value ("" to probe); docker_host: DOCKER_HOST's, if set."""
    if forced in ("local", "vm"):
        return forced, f"TESTBED_ENGINE={forced}"
    if forced:
        raise TestbedError(f"TESTBED_ENGINE={forced!r}: use local or vm")
    found = probe_local()
    where = docker_host or "the local socket"
    if found is None:
        return "vm", f"no Docker engine answers at {where}"
    if isinstance(found, str):
        return "vm", f"the engine at {where} cannot run a privileged probe ({found})"
    missing = [f for f in FEATURES if not found.get(f)]
    if missing:
        return "vm", f"the kernel of the engine at {where} lacks {', '.join(missing)}"
    return "local", f"the kernel of the engine at {where} has {', '.join(FEATURES)}"


def engine(config: Config, steps=None):
    """The engine to use, and why (printed by every command that starts one)."""
    from .local import LocalEngine, probe
    from .vm import VmEngine
    # DOCKER_HOST is docker's own switch, read where the docker SDK reads it
    kind, why = choose(config.engine, lambda: probe(steps), os.environ.get("DOCKER_HOST"))
    if steps is not None:
        steps.say(f"engine: {kind} ({why})")
    return (LocalEngine(steps) if kind == "local" else VmEngine(config, steps)), why
