"""Merge: every feed's accepted indicators plus local overrides into one enforceable blocklist.

The output is shaped for the kernel and the resolver, not for people: single addresses apart
from prefixes (hash sets vs interval sets), prefixes aggregated so that no two overlap (nft
rejects overlapping elements and its auto-merge makes later deletes fail, docs/design.md §6),
addresses already covered by a prefix dropped, names covered by a blocked parent dropped. Local
allows win over everything and are kept for `rpz-passthru.`.

Provenance (which feed, serial and line) is not carried here: it is recorded per feed by the
state and looked up by `why`, which keeps a million-entry merge cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from agent.indicators import DOMAIN, IPV4, IPV6, Indicator
from agent.netrange import AF_INET, AF_INET6, SpanSet, join, spans, subtract, to_cidrs
from agent.netrange import aggregate as aggregate  # the kill switch's allowlist uses it too

SET_NAMES = ("v4", "v4_nets", "v6", "v6_nets", "names", "wild", "allow_names", "allow_wild",
             "allow_ips")


class Blocklist(NamedTuple):
    """What is enforced: immutable sets of canonical text values."""

    v4: frozenset[str] = frozenset()  # single IPv4 addresses
    v4_nets: frozenset[str] = frozenset()  # aggregated IPv4 prefixes, no overlap
    v6: frozenset[str] = frozenset()
    v6_nets: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()  # exact names
    wild: frozenset[str] = frozenset()  # names blocked with all their subdomains
    allow_names: frozenset[str] = frozenset()  # local allows: rpz-passthru
    allow_wild: frozenset[str] = frozenset()
    allow_ips: frozenset[str] = frozenset()  # addresses and prefixes, both families

    def counts(self) -> dict[str, int]:
        return {name: len(values) for name, values in zip(SET_NAMES, self, strict=True)}

    @property
    def total(self) -> int:
        """Enforced entries (allow entries are not counted: they block nothing)."""
        return len(self.v4) + len(self.v4_nets) + len(self.v6) + len(self.v6_nets) + len(
            self.names) + len(self.wild)

    def to_json(self) -> dict[str, list[str]]:
        return {name: sorted(values) for name, values in zip(SET_NAMES, self, strict=True)}

    @classmethod
    def from_json(cls, data: dict[str, list[str]]) -> Blocklist:
        return cls(*(frozenset(data.get(name, ())) for name in SET_NAMES))


class Union(NamedTuple):
    """Every source's values in one set per kind, before aggregation and the allows."""

    addrs: dict[str, set[str]]  # IPV4 / IPV6 -> single addresses
    nets: dict[str, set[str]]  # IPV4 / IPV6 -> prefixes
    names: set[str]
    wild: set[str]

    @classmethod
    def empty(cls) -> Union:
        return cls({IPV4: set(), IPV6: set()}, {IPV4: set(), IPV6: set()}, set(), set())

    def add(self, indicators: Iterable[Indicator]) -> None:
        addrs, nets, names, wild = self
        for ind in indicators:
            if ind.type == DOMAIN:
                (wild if ind.subdomains else names).add(ind.value)
            elif "/" in ind.value:
                nets[ind.type].add(ind.value)
            else:
                addrs[ind.type].add(ind.value)


def merge(sources: Iterable[Iterable[Indicator]], allow: Iterable[Indicator] = ()) -> Blocklist:
    """Union of all sources (feeds and local denies), minus the allows, deduplicated."""
    union = Union.empty()
    for source in sources:
        union.add(source)
    return finish(union, allow)


def finish(union: Union, allow: Iterable[Indicator] = ()) -> Blocklist:
    """The blocklist from the sources' union: prefixes aggregated, covered entries dropped,
    the allows carved out (agent.digest builds the union from compact feed results)."""
    addrs, nets, names, wild = union
    allow_ips: set[str] = set()
    allow_names: set[str] = set()
    allow_wild: set[str] = set()
    for ind in allow:
        if ind.type == DOMAIN:
            (allow_wild if ind.subdomains else allow_names).add(ind.value)
        else:
            allow_ips.add(ind.value)

    out_nets: dict[str, frozenset[str]] = {}
    out_addrs: dict[str, frozenset[str]] = {}
    for kind, family in ((IPV4, AF_INET), (IPV6, AF_INET6)):
        allowed = [a for a in allow_ips if (":" in a) == (kind == IPV6)]
        out_addrs[kind], out_nets[kind] = _addresses(addrs[kind], nets[kind], allowed, family)

    if allow_names:  # never in place: the union may be a feed's own cached set
        names, wild = names - allow_names, wild - allow_names
    names, wild = _drop_covered(names, wild, allow_wild)
    return Blocklist(
        v4=out_addrs[IPV4], v4_nets=out_nets[IPV4], v6=out_addrs[IPV6], v6_nets=out_nets[IPV6],
        names=frozenset(names), wild=frozenset(wild), allow_names=frozenset(allow_names),
        allow_wild=frozenset(allow_wild), allow_ips=frozenset(allow_ips),
    )


def _addresses(addrs: set[str], nets: set[str], allowed: list[str], family: int
               ) -> tuple[frozenset[str], frozenset[str]]:
    """(single addresses, prefixes) of one family: prefixes joined, local allows carved out of
    them, addresses inside a prefix or an allow dropped.

    The spans are computed once and serve both the aggregation and the covering test: a national
    list has tens of thousands of prefixes and this runs on every sync.
    """
    holes = spans(allowed, family)
    blocked = subtract(spans(nets, family), holes) if holes else spans(nets, family)
    cidrs = to_cidrs(blocked, family)
    carved = {c for c in cidrs if "/" not in c}  # what carving left as single addresses
    covering = SpanSet(family, join(sorted([*blocked, *holes])))
    kept = covering.outside(addrs) if covering and addrs else addrs
    return frozenset(kept | carved), frozenset(c for c in cidrs if "/" in c)


def covering_parent(name: str, wild: frozenset[str] | set[str]) -> str | None:
    """The nearest strict parent of `name` that is blocked with its subdomains, if any."""
    idx = name.find(".")
    while idx >= 0:
        parent = name[idx + 1:]
        if parent in wild:
            return parent
        idx = name.find(".", idx + 1)
    return None


def _drop_covered(
    names: set[str], wild: set[str], allow_wild: set[str]
) -> tuple[set[str], set[str]]:
    """Drop names a wildcard parent already blocks, and names under a local wildcard allow."""
    if allow_wild:
        names = {n for n in names if n not in allow_wild and not covering_parent(n, allow_wild)}
        wild = {n for n in wild if n not in allow_wild and not covering_parent(n, allow_wild)}
    if wild:
        names = {n for n in names if n not in wild and covering_parent(n, wild) is None}
        wild = {n for n in wild if covering_parent(n, wild) is None}
    return names, wild
