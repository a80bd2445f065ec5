"""How much of the public address space a blocklist covers: the guard rail that adds things up.

Per-entry guards cannot see a sum: 286 prefixes, each /8 or longer and none in a special range,
merge into 100 % of public IPv4 while the plan changes 9 % of its entries. So after the merge
the share of public space that is blocked is measured per family, and a plan above
`guards.max_address_share` is held like a max_change hold (agent/plan.py), naming the feeds and
prefixes that weigh most.

The denominator is the public space: IPv4 without the IANA special-purpose ranges (the guards'
list), IPv6 global unicast (2000::/3, the only part that is allocated) without its special
ranges. Only blocked addresses inside it count. Pure integer arithmetic on spans (agent/netrange).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from agent.guards import SPECIAL_V4, SPECIAL_V6
from agent.indicators import DOMAIN, IPV4, Indicator
from agent.merge import Blocklist
from agent.netrange import (
    AF_INET,
    AF_INET6,
    Span,
    intersect,
    join,
    set_spans,
    span,
    spans,
    subtract,
)

_UNIVERSE: dict[int, list[Span]] = {AF_INET: [(0, 2**32 - 1)],
                                    AF_INET6: [span("2000::/3", AF_INET6)]}


def _public(family: int) -> list[Span]:
    special = SPECIAL_V4 if family == AF_INET else SPECIAL_V6
    return subtract(_UNIVERSE[family], spans((cidr for cidr, _ in special), family))


PUBLIC: dict[int, list[Span]] = {AF_INET: _public(AF_INET), AF_INET6: _public(AF_INET6)}
PUBLIC_SIZE: dict[int, int] = {family: sum(last - first + 1 for first, last in joined)
               for family, joined in PUBLIC.items()}


def public_count(joined: Sequence[Span], family: int) -> int:
    """Addresses of `joined` (sorted, joined spans) that are public."""
    return sum(last - first + 1 for first, last in intersect(list(joined), PUBLIC[family]))


class Share(NamedTuple):
    """Fractions of public IPv4 and IPv6 space blocked."""

    v4: float = 0.0
    v6: float = 0.0

    def text(self) -> str:
        return f"{self.v4:.4%} of public IPv4, {self.v6:.6%} of public IPv6"


def _family_share(singles: int, nets: frozenset[str], family: int) -> float:
    """Prefixes exactly; single addresses one each without looking at them (they lie outside the
    prefixes, as the merge leaves them, and only `allow_special` lets one be non-public): a
    million of them weigh 0.03 % of IPv4, and the check stays free on every sync."""
    return (nets_public(nets, family) + singles) / PUBLIC_SIZE[family]


@lru_cache(maxsize=4)
def nets_public(nets: frozenset[str], family: int) -> int:
    """The public addresses of a blocklist's prefixes, asked before and after a plan that
    moved only single addresses (agent.merge_delta): the same set, counted once."""
    return public_count(set_spans(nets, family), family)


def blocklist_share(bl: Blocklist) -> Share:
    counts = bl.counts()  # a recorded blocklist knows them without building its sets
    return Share(_family_share(counts["v4"], bl.v4_nets, AF_INET),
                 _family_share(counts["v6"], bl.v6_nets, AF_INET6))


class Contributor(NamedTuple):
    source: str  # a feed name, or "local deny"
    value: str  # a prefix or address
    share: float  # of its family's public space


def contributors(sources: Iterable[tuple[str, Iterable[Indicator]]], share: Share,
                 limit: float, top: int = 5) -> list[str]:
    """Who weighs most in each family above `limit`: each source's share, then its largest
    entries, as lines for the hold message."""
    lines: list[str] = []
    listed = [(name, [i for i in inds if i.type != DOMAIN]) for name, inds in sources]
    for kind, family, value in (("IPv4", AF_INET, share.v4), ("IPv6", AF_INET6, share.v6)):
        if value <= limit:
            continue
        weights: list[tuple[float, str]] = []
        entries: list[Contributor] = []
        for name, inds in listed:
            mine = [i.value for i in inds if (i.type == IPV4) == (family == AF_INET)]
            if not mine:
                continue
            weights.append((public_count(spans(mine, family), family) / PUBLIC_SIZE[family],
                            name))
            for v in mine:
                size = public_count(join([span(v, family)]), family) / PUBLIC_SIZE[family]
                entries.append(Contributor(name, v, size))
        weights.sort(reverse=True)
        entries.sort(key=lambda c: (-c.share, c.source, c.value))
        lines.append(f"{kind}: " + ", ".join(f"{n} {w:.2%}" for w, n in weights[:top]))
        lines.append(f"largest {kind} entries: " + ", ".join(
            f"{c.value} ({c.source}, {c.share:.2%})" for c in entries[:top]))
    return lines
