"""The environment a benchmark runs the agent in: as the Debian package installs it.

dh-python compiles the package to byte code at install, so a gateway never compiles the agent
at start-up; a development machine may set PYTHONDONTWRITEBYTECODE, and then every `sync`
process would compile every module again (0.3-0.5 s, counted as the sync's). Here the byte code
is written once, under a cache directory of the benchmark's own, before anything is timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("agent.cli.commands.sync", "agent.cli.commands.daemon", "agent.backends.nftables",
           "agent.backends.dns_update", "agent.backends.dns_unbound", "agent.daemon.loop")


def deployed_env(cache: Path) -> dict[str, str]:
    """os.environ with byte code on, written under `cache`; the agent compiled into it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    subprocess.run([sys.executable, "-c", "import " + ", ".join(MODULES)], check=True,
                   cwd=str(ROOT), env=env)
    return env
