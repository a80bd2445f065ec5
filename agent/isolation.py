"""The kill switch's state: is the gateway isolated, since when, by whom, why, until when.

Isolation is enforced by set elements in the agent's table, not by rules: the static chains
`iso_forward`, `iso_output`, `iso_input` drop what crosses a WAN interface listed in the set
`iso_wan`, except the management networks and the `iso_allow_*` addresses (essential services);
quarantined partner networks sit in `peer_v4`/`peer_v6`. Isolating is therefore a transaction
of a few elements, whatever the size of the blocklist, and a `--for` deadline is an element
timeout that the kernel honours even when the daemon is down.

This module holds the pure state (a small immutable value kept in `isolation.json`) and the
name resolution done when isolation starts (an edge: it runs before the internet is cut).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agent.indicators import InvalidValue, normalize_domain, normalize_ip
from agent.state import StateStore


@dataclass(frozen=True)
class Quarantine:
    """One quarantined partner network (a neighbouring hospital that was hit)."""

    name: str
    cidrs: tuple[str, ...]
    since: int
    by: str
    reason: str
    deadline: int | None = None


@dataclass(frozen=True)
class IsolationState:
    active: bool = False
    since: int | None = None
    by: str = ""
    reason: str = ""
    deadline: int | None = None
    allow: tuple[str, ...] = ()  # addresses and prefixes kept reachable, names resolved
    resolved: dict[str, list[str]] = field(default_factory=dict)  # name -> addresses
    unresolved: tuple[str, ...] = ()  # allowlisted names that did not resolve
    peers: tuple[Quarantine, ...] = ()

    def live(self, now: int) -> IsolationState:
        """The state with deadlines that passed already applied (the kernel did it too)."""
        state = self
        if state.active and state.deadline is not None and state.deadline <= now:
            state = replace(state, active=False)
        kept = tuple(p for p in state.peers if p.deadline is None or p.deadline > now)
        return replace(state, peers=kept) if kept != state.peers else state

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["peers"] = [asdict(p) for p in self.peers]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IsolationState:
        peers = tuple(Quarantine(**{**p, "cidrs": tuple(p["cidrs"])})
                      for p in data.get("peers", []))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields.update(allow=tuple(data.get("allow", ())), peers=peers,
                      unresolved=tuple(data.get("unresolved", ())))
        return cls(**fields)


def load(store: StateStore) -> IsolationState:
    return IsolationState.from_json(store.load_isolation())  # {} (not isolated) if unreadable


def save(store: StateStore, state: IsolationState) -> None:
    store.save_isolation(state.to_json())


def split_allow(entries: Iterable[str]) -> tuple[list[str], list[str]]:
    """(addresses and prefixes, names) of the isolation allowlist."""
    addrs, names = [], []
    for entry in entries:
        try:
            addrs.append(normalize_ip(entry)[1])
        except InvalidValue:
            names.append(normalize_domain(entry))
    return addrs, names


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


def now() -> int:
    return int(time.time())
