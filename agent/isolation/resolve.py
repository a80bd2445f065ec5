"""The allowlist's names resolved now, before the internet is cut: the kill switch's one DNS edge.

What it finds is kept in the isolation state as values (name -> addresses), so rendering, the
boot files and `status` never resolve anything.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from agent.config import Config
from agent.isolation.model import Allow, IsolationState, allow_list, allow_targets


def resolve(names: Iterable[str], previous: dict[str, list[str]], timeout: float = 3.0
            ) -> tuple[dict[str, list[str]], list[str]]:
    """Resolve allowlisted names now, before the internet is cut.

    A name that does not resolve keeps the addresses it had at the last isolation (if any), so
    a dead resolver never closes the teleradiology link; it is reported either way.
    """
    resolved: dict[str, list[str]] = {}
    failed: list[str] = []
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        for name in names:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError):
                failed.append(name)
                if previous.get(name):
                    resolved[name] = list(previous[name])
                continue
            resolved[name] = sorted({str(info[4][0]).partition("%")[0] for info in infos})
    finally:
        socket.setdefaulttimeout(old_timeout)
    return resolved, failed


def allow_now(config: Config, previous: IsolationState) -> Allow:
    """What stays reachable through a cut made now: the configured allowlist, names resolved."""
    addrs, names = allow_targets(config)
    resolved, failed = resolve(names, previous.resolved)
    return allow_list(addrs, resolved, failed)
