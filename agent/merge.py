"""Merge: every feed's accepted indicators plus local overrides into one enforceable blocklist.

The output is shaped for the kernel and the resolver, not for people: single addresses apart
from prefixes (hash sets vs interval sets), prefixes aggregated so that no two overlap (nft
rejects overlapping elements and its auto-merge makes later deletes fail, design section 6),
addresses already covered by a prefix dropped, names covered by a blocked parent dropped. Local
allows win over everything and are kept for `rpz-passthru.`.

Provenance (which feed, serial and line) is not carried here: it is recorded per feed by the
state and looked up by `why`, which keeps a million-entry merge cheap.
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Iterable
from typing import NamedTuple

from agent.indicators import DOMAIN, IPV4, IPV6, Indicator

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


def merge(sources: Iterable[Iterable[Indicator]], allow: Iterable[Indicator] = ()) -> Blocklist:
    """Union of all sources (feeds and local denies), minus the allows, deduplicated."""
    addrs: dict[str, set[str]] = {IPV4: set(), IPV6: set()}
    nets: dict[str, set[str]] = {IPV4: set(), IPV6: set()}
    names: set[str] = set()
    wild: set[str] = set()
    for source in sources:
        for ind in source:
            if ind.type == DOMAIN:
                (wild if ind.subdomains else names).add(ind.value)
            elif "/" in ind.value:
                nets[ind.type].add(ind.value)
            else:
                addrs[ind.type].add(ind.value)

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
    for kind, family in ((IPV4, socket.AF_INET), (IPV6, socket.AF_INET6)):
        allowed = [a for a in allow_ips if (":" in a) == (kind == IPV6)]
        merged_nets = _aggregate(nets[kind], allowed, family)
        out_nets[kind] = frozenset(n for n in merged_nets if "/" in n)
        singles = addrs[kind] | {n for n in merged_nets if "/" not in n}
        out_addrs[kind] = frozenset(_uncovered(singles, [*out_nets[kind], *allowed], family))

    names -= allow_names
    wild -= allow_names
    names, wild = _drop_covered(names, wild, allow_wild)
    return Blocklist(
        v4=out_addrs[IPV4], v4_nets=out_nets[IPV4], v6=out_addrs[IPV6], v6_nets=out_nets[IPV6],
        names=frozenset(names), wild=frozenset(wild), allow_names=frozenset(allow_names),
        allow_wild=frozenset(allow_wild), allow_ips=frozenset(allow_ips),
    )


def _spans(cidrs: Iterable[str], family: int) -> list[tuple[int, int]]:
    """Sorted, merged [first, last] integer spans covering the given addresses and prefixes."""
    bits = 32 if family == socket.AF_INET else 128
    inet_pton, from_bytes = socket.inet_pton, int.from_bytes
    raw = []
    for cidr in cidrs:
        addr, _, length = cidr.partition("/")
        host = bits - (int(length) if length else bits)
        start = from_bytes(inet_pton(family, addr), "big")
        raw.append((start, start | ((1 << host) - 1)))
    raw.sort()
    merged: list[tuple[int, int]] = []
    for start, end in raw:
        if merged and start <= merged[-1][1] + 1:  # overlapping or adjacent
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: list[tuple[int, int]], holes: list[tuple[int, int]]
              ) -> list[tuple[int, int]]:
    """Spans minus holes (both sorted and merged)."""
    out: list[tuple[int, int]] = []
    h = 0
    for start, end in spans:
        while h < len(holes) and holes[h][1] < start:
            h += 1
        k = h
        while start <= end and k < len(holes) and holes[k][0] <= end:
            if holes[k][0] > start:
                out.append((start, holes[k][0] - 1))
            start = max(start, holes[k][1] + 1)
            k += 1
        if start <= end:
            out.append((start, end))
    return out


def _to_cidrs(spans: list[tuple[int, int]], family: int) -> list[str]:
    """The fewest prefixes exactly covering each span (host prefixes written as addresses)."""
    bits = 32 if family == socket.AF_INET else 128
    size = 4 if family == socket.AF_INET else 16
    inet_ntop = socket.inet_ntop
    out = []
    for start, end in spans:
        while start <= end:
            align = (start & -start).bit_length() - 1 if start else bits
            fit = (end - start + 1).bit_length() - 1
            host = min(align, fit)
            text = inet_ntop(family, start.to_bytes(size, "big"))
            out.append(text if host == 0 else f"{text}/{bits - host}")
            start += 1 << host
    return out


def aggregate(values: Iterable[str], family: int) -> list[str]:
    """The fewest non-overlapping prefixes covering `values` (addresses and prefixes)."""
    return _to_cidrs(_spans(values, family), family)


def _aggregate(nets: set[str], allowed: list[str], family: int) -> list[str]:
    """Merge overlapping and adjacent prefixes; carve local allows out of them.

    Integer spans rather than netaddr objects: a national list has tens of thousands of
    prefixes and this runs on every sync.
    """
    if not nets:
        return []
    spans = _spans(nets, family)
    if allowed:
        spans = _subtract(spans, _spans(allowed, family))
    return _to_cidrs(spans, family)


def _uncovered(addrs: set[str], covering: list[str], family: int) -> set[str]:
    """Addresses not inside any covering prefix (or allowed address)."""
    if not covering or not addrs:
        return addrs
    spans = _spans(covering, family)
    starts = [s for s, _ in spans]
    ends = [e for _, e in spans]
    inet_pton = socket.inet_pton
    from_bytes = int.from_bytes
    out = set()
    for addr in addrs:
        value = from_bytes(inet_pton(family, addr), "big")
        idx = bisect_right(starts, value) - 1
        if idx < 0 or ends[idx] < value:
            out.add(addr)
    return out


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
