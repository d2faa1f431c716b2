"""`python -m agent` is the same program as `nkprobe`."""

import sys

from agent.cli import main

sys.exit(main())
