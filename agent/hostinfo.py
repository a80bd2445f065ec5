"""Facts about this gateway that the guards protect: its own addresses and its DNS resolvers.

Read-only edges, kept apart so the guards stay pure and tests pass these facts explicitly. A
failure to read them is not fatal (the configured protected list still applies) but is logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agent.errors import ApplyError
from agent.util.command import Failure, run

log = logging.getLogger(__name__)
_IP = Failure(family="ip", missing_hint="", timeout_hint="", failed_hint="")  # logged, one line


def local_addresses() -> list[str]:
    """Every address configured on this host's interfaces (`ip -j addr`)."""
    try:
        links = json.loads(run(["ip", "-j", "addr", "show"], timeout=10, failure=_IP))
    except (OSError, ApplyError, ValueError) as exc:
        log.warning("cannot list this gateway's addresses (%s); only guards.protected applies",
                    exc)
        return []
    return [info["local"] for link in links for info in link.get("addr_info", ())
            if "local" in info]


def resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The nameservers this host uses: blocking them would blind the gateway."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1].partition("%")[0])
    return out
