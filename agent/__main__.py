"""`python -m agent` is the same command as `blocklist-agent`."""

import sys

from agent.cli import main

sys.exit(main())
