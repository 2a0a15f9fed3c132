"""Host-side commands: argv only, logged, with the command and its stderr in every error."""

from __future__ import annotations

import logging
import subprocess
from typing import Optional, Sequence

log = logging.getLogger("testbed")


class TestbedError(Exception):
    """A step failed; the message names the cause and, where there is one, the fix."""

    __test__ = False    # not a test class, whatever pytest thinks of the name


def run(argv: Sequence[str], *, check: bool = True, input: Optional[bytes] = None,
        timeout: Optional[float] = None, cwd: Optional[str] = None, env=None) -> subprocess.CompletedProcess:
    log.debug("+ %s", " ".join(map(str, argv)))
    try:
        proc = subprocess.run(list(map(str, argv)), input=input, capture_output=True,
                              timeout=timeout, cwd=cwd, env=env,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise TestbedError(f"{argv[0]}: not installed ({err})") from None
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{' '.join(map(str, argv))}: no answer after {timeout} s") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-15:]
        raise TestbedError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n  " + "\n  ".join(err))
    return proc
