"""`python -m testbed`: the `testbed` command."""

import sys

from .cli import main

sys.exit(main())
