"""A snapshot of the host's own network configuration, to prove the lab never touched it.

The lab's one absolute rule is that the host namespace is left exactly as it was (docs/design.md
§9). Tests and `python -m lab check` take a snapshot before building a lab and compare after
tearing it down. Only read-only commands run here, all in the host namespace.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

_COMMANDS: dict[str, list[str]] = {
    "nft ruleset": ["nft", "list", "ruleset"],
    "ip addr": ["ip", "addr"],
    "ip -4 route (all tables)": ["ip", "-4", "route", "show", "table", "all"],
    "ip -6 route (all tables)": ["ip", "-6", "route", "show", "table", "all"],
    "ip -4 rule": ["ip", "-4", "rule"],
    "ip -6 rule": ["ip", "-6", "rule"],
}
_SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")

# Lifetimes count down by themselves; they are not configuration.
_VOLATILE = re.compile(r"\b(valid_lft|preferred_lft|expires)\s+\S+")


def snapshot() -> dict[str, str]:
    """The host's ruleset, addresses, routes, rules and forwarding switches, as text."""
    state: dict[str, str] = {}
    for name, argv in _COMMANDS.items():
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        state[name] = _VOLATILE.sub(r"\1 -", result.stdout) + result.stderr
    for key in _SYSCTLS:
        # Read by this process, whose main thread is in the host namespace: the host's values.
        state[key] = Path("/proc/sys", key).read_text().strip()
    return state


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Unified-diff lines for every part that changed; empty when the host is unchanged."""
    lines: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, ""), after.get(name, "")
        if old != new:
            lines += difflib.unified_diff(old.splitlines(), new.splitlines(),
                                          f"{name} before", f"{name} after", lineterm="")
    return lines
