"""The kill switch's state: is the gateway isolated, since when, by whom, why, until when.

Isolation is enforced by set elements in the agent's table, not by rules: the static chains
`iso_forward`, `iso_output`, `iso_input` drop what crosses a WAN interface listed in the set
`iso_wan`, except the management networks and the `iso_allow_*` addresses (essential services);
quarantined partner networks sit in `peer_v4`/`peer_v6`. Isolating is therefore a transaction
of a few elements, whatever the size of the blocklist, and a `--for` deadline is an element
timeout that the kernel honours even when the daemon is down.

Pure: the state is a small immutable value (kept in `isolation.json` by agent.isolation.record);
names of the allowlist come in already resolved (agent.isolation.resolve does that, before the
internet is cut).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from agent.config import Config
from agent.indicators import InvalidValue, normalize_domain, normalize_ip


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


class Allow(NamedTuple):
    """What stays reachable through the cut, as known when isolation starts."""

    addresses: tuple[str, ...]          # addresses and prefixes, resolved names included
    resolved: dict[str, list[str]]      # name -> addresses
    unresolved: tuple[str, ...]         # names that did not resolve this time


def split_allow(entries: Iterable[str]) -> tuple[list[str], list[str]]:
    """(addresses and prefixes, names) of the isolation allowlist."""
    addrs, names = [], []
    for entry in entries:
        try:
            addrs.append(normalize_ip(entry)[1])
        except InvalidValue:
            names.append(normalize_domain(entry))
    return addrs, names


def allow_targets(config: Config) -> tuple[list[str], list[str]]:
    """(addresses and prefixes, names) to keep open: `isolation.allow`, and with
    `isolation.allow_feeds` the hosts of every feed URL and mirror."""
    addrs, names = split_allow(config.isolation.allow)
    if config.isolation.allow_feeds:
        for feed in config.feeds:
            for url in (feed.url, *feed.mirrors):
                host = urlsplit(url).hostname
                if host:
                    try:
                        addrs.append(normalize_ip(host)[1])
                    except InvalidValue:
                        names.append(host)
    return addrs, names


def allow_list(addrs: Sequence[str], resolved: Mapping[str, list[str]],
               unresolved: Sequence[str]) -> Allow:
    """The allowlist's addresses followed by those its names resolved to, each once."""
    every = [*addrs, *(a for values in resolved.values() for a in values)]
    return Allow(tuple(dict.fromkeys(every)), dict(resolved), tuple(unresolved))


def isolate(previous: IsolationState, allow: Allow, *, since: int, by: str, reason: str,
            deadline: int | None) -> IsolationState:
    """The whole gateway cut from the internet (quarantined peers stay quarantined)."""
    return replace(previous, active=True, since=since, by=by, reason=reason, deadline=deadline,
                   allow=allow.addresses, resolved=allow.resolved, unresolved=allow.unresolved)


def quarantine(previous: IsolationState, allow: Allow, peers: Sequence[Quarantine]
               ) -> IsolationState:
    """`peers` quarantined (replacing an earlier quarantine of the same name)."""
    names = {p.name for p in peers}
    kept = [p for p in previous.peers if p.name not in names]
    return replace(previous, peers=tuple(kept + list(peers)), allow=allow.addresses,
                   resolved=allow.resolved, unresolved=allow.unresolved)


def restore(previous: IsolationState) -> IsolationState:
    """Internet access open again (quarantined peers stay quarantined)."""
    return replace(previous, active=False, deadline=None)


def release(previous: IsolationState, names: Iterable[str]) -> IsolationState:
    """The quarantine of the peers `names` lifted."""
    lifted = set(names)
    return replace(previous, peers=tuple(p for p in previous.peers if p.name not in lifted))
