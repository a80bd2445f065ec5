"""`blocklist-agent run`: the daemon, as started by blocklist-agent.service (Type=notify)."""

from __future__ import annotations

import argparse
import logging

from agent.cli.common import EXIT_OK, Output
from agent.daemon.loop import Daemon
from agent.daemon.notify import Journal, journal_logging


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    """Run until SIGTERM; a configuration error at start-up exits 2 (through the CLI)."""
    # The CLI only shows warnings of one-shot commands; a daemon reports what it does.
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.getLogger().setLevel(level)
    journal_logging(level)
    daemon = Daemon(args.config, journal=Journal.auto())
    code = daemon.run()
    return code if code else EXIT_OK
