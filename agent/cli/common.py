"""What every command shares: the output (text or --json), exit codes, the operator's name and
loading the configuration. docs/design.md §11: these are the v1 contract of the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import pwd
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import config as config_mod
from agent.errors import ConfigError, UsageError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("agent")


class Output:
    """Where a command writes: text for people, or one JSON document for machines."""

    def __init__(self, as_json: bool, verbose: bool, quiet: bool) -> None:
        self.json = as_json
        self.verbose = verbose
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def emit(self, data: Any, text: Callable[[], str]) -> None:
        if self.json:
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        elif not self.quiet:
            out = text()
            if out:
                print(out)

    def progress(self, message: str) -> None:
        if (self.tty or self.verbose) and not self.json and not self.quiet:
            print(f"... {message}", file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"blocklist-agent: {message}", file=sys.stderr)


LOGINUID = Path("/proc/self/loginuid")
_NO_LOGINUID = 4294967295  # (uid_t) -1: no login session (a service, a container)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


def operator() -> str:
    """The person behind the command, for the audit trail: the login uid first (set at login,
    kept through sudo and su, not changed by the environment), then sudo's SUDO_USER, then the
    terminal's login name (logname), then the user."""
    try:
        uid = int(LOGINUID.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        uid = _NO_LOGINUID
    if uid != _NO_LOGINUID:
        return _user(uid)
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        return sudo
    try:
        login = os.getlogin()
    except OSError:
        login = ""
    if login:
        return login
    for var in ("LOGNAME", "USER"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return _user(os.getuid())


def load_config(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(args.config)


def duration_arg(text: str) -> int:
    try:
        return config_mod.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def feed_name_arg(text: str) -> str:
    """A feed name as the configuration spells it (agent/config/model.py NAME_RE)."""
    if not config_mod.model.NAME_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a feed name: 1 to 63 of a-z, 0-9 and '-', not starting with '-'")
    return text


# --- parser ------------------------------------------------------------------------------


def now_ts() -> int:
    return int(time.time())


__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "ConfigError", "Output", "UsageError",
           "duration_arg", "feed_name_arg", "load_config", "now_ts", "operator"]
