"""The kill switch's state: is the gateway isolated, since when, by whom, why, until when.

Isolation is enforced by set elements in the agent's table, not by rules: the static chains
`iso_forward`, `iso_output`, `iso_input` drop what crosses a WAN interface listed in the set
`iso_wan`, except what management hosts start and the `iso_allow_*` addresses (essential
services); quarantined partner networks sit in `peer_v4`/`peer_v6`. Isolating is therefore a
transaction of a few elements, whatever the size of the blocklist, and a `--for` deadline is an
element timeout that the kernel honours even when the daemon is down.

Deadlines are the kernel's: the record keeps the wall-clock deadline for people, and for the
agent the boot and the deadline on that boot's clock (agent.isolation.clock). `rebase` turns a
record into the state as of now on this boot, taking the time left from the kernel when it holds
the elements; `judge` says whether the kernel lifted an isolation on time, whether someone
removed it, or whether the kernel isolates without a record (break-glass.nft).

Pure: the state is a small immutable value (kept in `isolation.json` by agent.isolation.record);
names of the allowlist come in already resolved (agent.isolation.resolve).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from agent.config import Config
from agent.indicators import InvalidValue, normalize_domain, normalize_ip
from agent.isolation.clock import Clock

SLACK = 2  # seconds: the kernel's element timeout and the uptime deadline differ by rounding
BREAK_GLASS = "break-glass"
DEADLINE = "deadline"


@dataclass(frozen=True)
class Quarantine:
    """One quarantined partner network (a neighbouring hospital that was hit)."""

    name: str
    cidrs: tuple[str, ...]
    since: int
    by: str
    reason: str
    deadline: int | None = None         # wall clock, for people
    until_uptime: float | None = None   # the deadline on the clock of the record's boot
    left: int | None = None             # seconds left when last checked (for another boot)


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
    boot_id: str = ""                   # the boot whose clock `until_uptime` values count on
    until_uptime: float | None = None
    left: int | None = None
    # the isolate commands this one extended or replaced (since, by, reason, deadline): who
    # started the isolation and why is never lost to a second `isolate`
    earlier: tuple[dict[str, Any], ...] = ()
    ended_by: str = ""  # DEADLINE: the last isolation was lifted by the kernel, on time

    def live(self, now: int) -> IsolationState:
        """The state with deadlines that passed already applied (the kernel did it too).

        `now` must be the wall clock of the same moment the state was rebased to (`rebase`
        re-expresses every deadline as that wall clock plus the time left on the boot's clock).
        """
        state = self
        if state.active and state.deadline is not None and state.deadline <= now:
            state = replace(state, active=False)
        kept = tuple(p for p in state.peers if p.deadline is None or p.deadline > now)
        return replace(state, peers=kept) if kept != state.peers else state

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["peers"] = [asdict(p) for p in self.peers]
        data["earlier"] = [dict(e) for e in self.earlier]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IsolationState:
        peers = tuple(Quarantine(**{**{k: v for k, v in p.items()
                                       if k in Quarantine.__dataclass_fields__},
                                    "cidrs": tuple(p["cidrs"])})
                      for p in data.get("peers", []))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields.update(allow=tuple(data.get("allow", ())), peers=peers,
                      unresolved=tuple(data.get("unresolved", ())),
                      earlier=tuple(dict(e) for e in data.get("earlier", ())))
        return cls(**fields)


class KernelFacts(Protocol):
    """What the kernel holds of the kill switch (agent.backends.nft_view.KernelIsolation)."""

    @property
    def table_present(self) -> bool: ...
    @property
    def wan(self) -> Mapping[str, int | None]: ...     # interface -> seconds left (None: none)
    @property
    def peers(self) -> Mapping[str, int | None]: ...   # prefix -> seconds left


class Allow(NamedTuple):
    """What stays reachable through the cut, as known when isolation starts."""

    addresses: tuple[str, ...]          # addresses and prefixes, resolved names included
    resolved: dict[str, list[str]]      # name -> addresses
    unresolved: tuple[str, ...]         # names that did not resolve this time


class Verdict(NamedTuple):
    """A record judged against the kernel and the boot's clock."""

    state: IsolationState  # the intent now: rebased, passed deadlines applied, break-glass adopted
    lifted: bool           # the record said isolated and its time is up: the kernel lifted it
    removed: bool          # the record says isolated, time is left, the kernel does not hold it
    adopted: bool          # the kernel isolates and nothing recorded it (break-glass.nft)
    lifted_peers: tuple[str, ...] = ()


def time_left(deadline: int | None, until_uptime: float | None, left: int | None,
              same_boot: bool, clock: Clock) -> int | None:
    """Seconds left before a deadline, by the boot's clock; None: no deadline."""
    if deadline is None and until_uptime is None:
        return None
    if same_boot and until_uptime is not None:
        return math.ceil(until_uptime - clock.uptime)
    if left is not None:  # another boot: what was left when last checked (what the boot file has)
        return left
    return (deadline or 0) - clock.wall  # a record older than boot ids: only the wall clock


def _kernel_left(values: Iterable[int | None]) -> tuple[bool, int | None]:
    """(the kernel holds it, its seconds left): the longest of the elements, None if one has
    no timeout."""
    found = list(values)
    if not found:
        return False, None
    return True, None if any(v is None for v in found) else max(v for v in found if v is not None)


def _timed(left: int | None, clock: Clock) -> dict[str, Any]:
    if left is None:
        return {"deadline": None, "until_uptime": None, "left": None}
    return {"deadline": clock.wall + left, "until_uptime": clock.uptime + left, "left": left}


def rebase(state: IsolationState, clock: Clock, kernel: KernelFacts | None = None
           ) -> IsolationState:
    """`state` with every deadline re-expressed on `clock` (deadline = now + time left).

    The time left is the kernel's where it holds the elements, else the boot's clock's (same
    boot), else what was left when last checked (another boot): never the wall clock, unless
    the record predates boot ids.
    """
    same = bool(state.boot_id) and state.boot_id == clock.boot_id
    wan_held, wan_left = _kernel_left(kernel.wan.values() if kernel else ())
    left = time_left(state.deadline, state.until_uptime, state.left, same, clock)
    if state.active and wan_held:
        left = wan_left
    peers = []
    for p in state.peers:
        p_left = time_left(p.deadline, p.until_uptime, p.left, same, clock)
        held, k_left = _kernel_left(kernel.peers[c] for c in p.cidrs
                                    if kernel is not None and c in kernel.peers)
        peers.append(replace(p, **_timed(k_left if held else p_left, clock)))
    return replace(state, boot_id=clock.boot_id, peers=tuple(peers),
                   **_timed(left if state.active else None, clock))


def judge(recorded: IsolationState, clock: Clock, kernel: KernelFacts | None = None) -> Verdict:
    """The record against the kernel (None: it cannot be read) and the boot's clock."""
    state = rebase(recorded, clock, kernel).live(clock.wall)
    if (kernel is not None and not kernel.wan and state.active and state.left is not None
            and state.left <= SLACK):
        state = replace(state, active=False)  # the kernel's rounding: lifted on time
    lifted = recorded.active and not state.active
    if lifted:
        state = replace(state, ended_by=DEADLINE)
    lifted_peers = tuple(sorted({p.name for p in recorded.peers}
                                - {p.name for p in state.peers}))
    removed = adopted = False
    if kernel is not None:
        removed = state.active and not kernel.wan
        if not state.active and kernel.wan:
            adopted = True
            held, left = _kernel_left(kernel.wan.values())
            state = replace(state, active=True, since=None, by=BREAK_GLASS, earlier=(),
                            reason="isolated outside the agent (break-glass.nft or nft by "
                            "hand): iso_wan holds " + ", ".join(sorted(kernel.wan)),
                            **_timed(left if held else None, clock))
    return Verdict(state, lifted, removed, adopted, lifted_peers)


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
    return list(dict.fromkeys(addrs)), list(dict.fromkeys(names))


def allow_list(addrs: Sequence[str], resolved: Mapping[str, list[str]],
               unresolved: Sequence[str]) -> Allow:
    """The allowlist's addresses followed by those its names resolved to, each once."""
    every = [*addrs, *(a for values in resolved.values() for a in values)]
    return Allow(tuple(dict.fromkeys(every)), dict(resolved), tuple(unresolved))


def with_allow(state: IsolationState, allow: Allow) -> IsolationState:
    return replace(state, allow=allow.addresses, resolved=allow.resolved,
                   unresolved=allow.unresolved)


def change_kind(previous: IsolationState, clock: Clock, duration: int | None) -> str | None:
    """None for a first isolation; "extending" when the new one lasts at least as long as the
    running one; "replacing" when it ends it earlier (a deadline on an open-ended one)."""
    if not previous.active:
        return None
    if duration is None:
        return "extending"
    if previous.deadline is not None and clock.wall + duration >= previous.deadline:
        return "extending"
    return "replacing"


def isolate(previous: IsolationState, allow: Allow, *, clock: Clock, by: str, reason: str,
            duration: int | None) -> IsolationState:
    """The whole gateway cut from the internet (quarantined peers stay quarantined).

    `previous` is rebased to `clock` (`judge`); a running isolation's author and reason move
    to `earlier`."""
    earlier = previous.earlier
    if previous.active:
        earlier += ({"since": previous.since, "by": previous.by, "reason": previous.reason,
                     "deadline": previous.deadline},)
    return replace(with_allow(previous, allow), active=True, since=clock.wall, by=by,
                   reason=reason, boot_id=clock.boot_id, earlier=earlier, ended_by="",
                   **_timed(duration, clock))


def quarantine(previous: IsolationState, allow: Allow, peers: Sequence[Quarantine]
               ) -> IsolationState:
    """`peers` quarantined (replacing an earlier quarantine of the same name)."""
    names = {p.name for p in peers}
    kept = [p for p in previous.peers if p.name not in names]
    return replace(with_allow(previous, allow), peers=tuple(kept + list(peers)))


def new_quarantine(name: str, cidrs: tuple[str, ...], *, clock: Clock, by: str, reason: str,
                   duration: int | None) -> Quarantine:
    return Quarantine(name, cidrs, clock.wall, by, reason, **_timed(duration, clock))


def restore(previous: IsolationState) -> IsolationState:
    """Internet access open again (quarantined peers stay quarantined)."""
    return replace(previous, active=False, earlier=(), ended_by="",
                   **_timed(None, Clock(0, "", 0.0)))


def release(previous: IsolationState, names: Iterable[str]) -> IsolationState:
    """The quarantine of the peers `names` lifted."""
    lifted = set(names)
    return replace(previous, peers=tuple(p for p in previous.peers if p.name not in lifted))
