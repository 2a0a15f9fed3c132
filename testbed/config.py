"""The testbed's settings: read once from TESTBED_* and the command line, then passed down.

No other module reads TESTBED_* itself.

    TESTBED_KERNEL           guest kernel of the VM engine: 6.1 | 6.12
    TESTBED_SUITE            Debian suite of the nodes: bullseye | bookworm | trixie
    TESTBED_LAYOUT           Amanda's layout: debian | zmanda
    TESTBED_ENGINE           local | vm: forces the engine instead of probing
    TESTBED_ACCEL            kvm | tcg: forces the VM's accelerator instead of trying KVM
    TESTBED_MIRROR           the Debian archive; else the host's own, from /etc/apt/sources.list*
    TESTBED_SOURCE_MIRRORS   more places for source files the mirror lacks, space-separated
    TESTBED_VM_MEMORY        the VM engine's memory, MiB
    TESTBED_LOGS             where a failed test keeps Amanda's logs; else the cache's logs/
    TESTBED_SHARED=1         other testbeds share the engine (matrix cells): no global reset
    TESTBED_CELL_REPORT      a matrix cell's report: the versions its nodes really run

TESTBED_KEEP is the Makefile's alone: set, `make test` and `make matrix` leave the engine up.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from .run import TestbedError

SOURCE_MIRRORS = ("http://archive.ubuntu.com/ubuntu/pool/universe",)


@dataclass(frozen=True)
class Config:
    kernel: str = "6.1"
    suite: str = "bookworm"
    layout: str = "debian"
    engine: str = ""                # "": probe
    accel: str = ""                 # "": KVM if a trial guest boots with it, else TCG
    mirror: str = ""                # "": the host's own
    source_mirrors: Tuple[str, ...] = SOURCE_MIRRORS
    vm_memory: int = 4096
    logs: str = ""                  # "": the cache's logs/
    shared: bool = False
    cell_report: str = ""

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **over) -> "Config":
        """Settings from env (os.environ if None); keyword arguments (the command line's) win."""
        env = os.environ if env is None else env
        memory = env.get("TESTBED_VM_MEMORY", str(cls.vm_memory))
        try:
            vm_memory = int(memory)
        except ValueError:
            raise TestbedError(f"TESTBED_VM_MEMORY={memory!r}: a number of MiB") from None
        found = cls(
            kernel=env.get("TESTBED_KERNEL", cls.kernel),
            suite=env.get("TESTBED_SUITE", cls.suite),
            layout=env.get("TESTBED_LAYOUT", cls.layout),
            engine=env.get("TESTBED_ENGINE", ""),
            accel=env.get("TESTBED_ACCEL", ""),
            mirror=env.get("TESTBED_MIRROR", ""),
            # set but empty: no fallback at all
            source_mirrors=tuple(env["TESTBED_SOURCE_MIRRORS"].split())
            if "TESTBED_SOURCE_MIRRORS" in env else SOURCE_MIRRORS,
            vm_memory=vm_memory,
            logs=env.get("TESTBED_LOGS", ""),
            shared=env.get("TESTBED_SHARED") == "1",
            cell_report=env.get("TESTBED_CELL_REPORT", ""))
        return dataclasses.replace(found, **over)

    def environment(self) -> Dict[str, str]:
        """The TESTBED_* variables that give these settings to a child process (a matrix cell)."""
        return {"TESTBED_KERNEL": self.kernel, "TESTBED_SUITE": self.suite, "TESTBED_LAYOUT": self.layout,
                "TESTBED_ENGINE": self.engine, "TESTBED_ACCEL": self.accel, "TESTBED_MIRROR": self.mirror,
                "TESTBED_SOURCE_MIRRORS": " ".join(self.source_mirrors),
                "TESTBED_VM_MEMORY": str(self.vm_memory), "TESTBED_LOGS": self.logs,
                "TESTBED_SHARED": "1" if self.shared else "", "TESTBED_CELL_REPORT": self.cell_report}
