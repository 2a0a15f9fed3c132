"""What every in-node script starts with (testbed.fixture.script puts it first): one sh()."""

import subprocess
import sys


def sh(*argv, input=None, check=True):
    """stdout of argv; unless check is False, a failure ends the script with a message naming the
    command, its exit status and the tail of its stderr."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        said = "\n  ".join(proc.stderr.strip().splitlines()[-15:])[-2000:]
        sys.exit(f"`{' '.join(argv)}` exited {proc.returncode}" + (f":\n  {said}" if said else ""))
    return proc.stdout
