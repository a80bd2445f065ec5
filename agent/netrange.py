"""Address-range arithmetic, written once: addresses and prefixes as integer spans.

A span is the inclusive pair (first, last) of the integers of one address family. The guards ask
whether a value touches a protected or special-purpose range, the merge aggregates prefixes and
carves local allows out of them, the kill switch aggregates its allowlist and `why` asks which
prefix covers an address: all with these functions, so that they agree on where a range ends.

Integers on `inet_pton` bytes rather than netaddr or ipaddress objects: a national list holds
tens of thousands of prefixes and half a million addresses, and the merge runs over all of them
on every sync. Inputs are canonical text (as `indicators.normalize` writes it); host bits set in
a prefix are ignored, as routers do.
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Iterable
from itertools import repeat

Span = tuple[int, int]
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
_BITS: dict[int, int] = {AF_INET: 32, AF_INET6: 128}
_SIZE: dict[int, int] = {AF_INET: 4, AF_INET6: 16}
_inet_pton, _inet_ntop, _from_bytes = socket.inet_pton, socket.inet_ntop, int.from_bytes
MAX_TOUCHED = 1 << 18  # /24 blocks listed for SpanSet.outside (a /6 worth; beyond: bisect all)


def family_of(value: str) -> int:
    """The family of canonical address or prefix text (only IPv6 is written with colons)."""
    return AF_INET6 if ":" in value else AF_INET


def bits(family: int) -> int:
    return _BITS[family]


def to_int(addr: str, family: int) -> int:
    return _from_bytes(_inet_pton(family, addr), "big")


def to_text(value: int, family: int) -> str:
    return _inet_ntop(family, value.to_bytes(_SIZE[family], "big"))


def span(cidr: str, family: int) -> Span:
    """(first, last) of an address or a prefix. Raises OSError or ValueError on bad text."""
    addr, _, length = cidr.partition("/")
    value = _from_bytes(_inet_pton(family, addr), "big")
    if not length:
        return value, value
    return prefix_span(value, int(length), family)


def prefix_span(value: int, length: int, family: int) -> Span:
    """(first, last) of the prefix of `length` bits around the address `value`."""
    host = (1 << (_BITS[family] - length)) - 1
    return value & ~host, value | host


def spans(values: Iterable[str], family: int) -> list[Span]:
    """Sorted spans covering the given addresses and prefixes, overlapping and adjacent joined."""
    return join(sorted(map(span, values, repeat(family))))


_KNOWN: dict[tuple[frozenset[str], int], tuple[Span, ...]] = {}
_KNOWN_MAX = 8


def set_spans(values: frozenset[str], family: int) -> tuple[Span, ...]:
    """`spans` of a set that is read several times in one sync (a blocklist's prefixes: the
    address share before and after, the covering test of a merge by difference)."""
    found = _KNOWN.get((values, family))
    if found is None:
        found = known_spans(values, family, spans(values, family))
    return found


def known_spans(values: frozenset[str], family: int, joined: Iterable[Span]
                ) -> tuple[Span, ...]:
    """Remember `joined` as the spans of `values`, which the caller computed anyway (the merge,
    whose prefixes the address share reads next)."""
    found = _KNOWN[(values, family)] = tuple(joined)
    while len(_KNOWN) > _KNOWN_MAX:
        del _KNOWN[next(iter(_KNOWN))]
    return found


def forget_spans() -> None:
    """Drop the remembered spans (the daemon, between syncs: they hold the sets alive)."""
    _KNOWN.clear()


def join(ordered: Iterable[Span]) -> list[Span]:
    """Sorted spans with the overlapping and adjacent ones merged into one."""
    out: list[Span] = []
    for first, last in ordered:
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def subtract(kept: list[Span], holes: list[Span]) -> list[Span]:
    """`kept` minus `holes` (both sorted and joined, as `spans` returns them)."""
    out: list[Span] = []
    h = 0
    for first, last in kept:
        while h < len(holes) and holes[h][1] < first:
            h += 1
        k = h
        while first <= last and k < len(holes) and holes[k][0] <= last:
            if holes[k][0] > first:
                out.append((first, holes[k][0] - 1))
            first = max(first, holes[k][1] + 1)
            k += 1
        if first <= last:
            out.append((first, last))
    return out


def intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """The spans in both `a` and `b` (each sorted and joined, as `spans` returns them)."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        first, last = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if first <= last:
            out.append((first, last))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def to_cidrs(ordered: Iterable[Span], family: int) -> list[str]:
    """The fewest prefixes exactly covering each span (host prefixes written as addresses)."""
    width = _BITS[family]
    size = _SIZE[family]
    out = []
    for first, last in ordered:
        while first <= last:
            align = (first & -first).bit_length() - 1 if first else width
            fit = (last - first + 1).bit_length() - 1
            host = min(align, fit)
            text = _inet_ntop(family, first.to_bytes(size, "big"))
            out.append(text if host == 0 else f"{text}/{width - host}")
            first += 1 << host
    return out


def aggregate(values: Iterable[str], family: int) -> list[str]:
    """The fewest non-overlapping prefixes covering `values` (addresses and prefixes)."""
    return to_cidrs(spans(values, family), family)


def covers(outer: str, inner: str) -> bool:
    """Is every address of `inner` inside `outer`? False across families."""
    family = family_of(outer)
    if family != family_of(inner):
        return False
    lo, hi = span(outer, family)
    first, last = span(inner, family)
    return lo <= first and last <= hi


class SpanSet:
    """Joined spans of one family, answering "inside?" and "touching?" with one bisect."""

    __slots__ = ("ends", "family", "starts")

    def __init__(self, family: int, joined: Iterable[Span]) -> None:
        self.family = family
        self.starts: list[int] = []
        self.ends: list[int] = []
        for first, last in joined:
            self.starts.append(first)
            self.ends.append(last)

    @classmethod
    def of(cls, values: Iterable[str], family: int) -> SpanSet:
        return cls(family, spans(values, family))

    def __bool__(self) -> bool:
        return bool(self.starts)

    def touches(self, first: int, last: int) -> bool:
        idx = bisect_right(self.starts, last) - 1
        return idx >= 0 and self.ends[idx] >= first

    def outside(self, addrs: Iterable[str]) -> set[str]:
        """The single addresses (not prefixes) that no span contains.

        The merge asks this of every address of a national list on every full merge, so for
        canonical IPv4 text the /24 an address lies in is looked up first (its text up to the
        last dot, in a set of the /24s the spans touch): most addresses lie in none and cost a
        string search instead of a conversion and a bisect."""
        starts, ends, family = self.starts, self.ends, self.family
        pton, from_bytes, bisect, out = _inet_pton, _from_bytes, bisect_right, set()
        touched = self._touched_24s()
        for addr in addrs:  # the bulk path of the merge: to_int written out, no call per value
            if touched is not None and addr[:addr.rfind(".")] not in touched:
                out.add(addr)
                continue
            value = from_bytes(pton(family, addr), "big")
            idx = bisect(starts, value) - 1
            if idx < 0 or ends[idx] < value:
                out.add(addr)
        return out

    def _touched_24s(self) -> set[str] | None:
        """The IPv4 /24s ("a.b.c") any span touches; None when they are too many to list."""
        if self.family != AF_INET:
            return None
        blocks = [(first >> 8, last >> 8) for first, last in zip(self.starts, self.ends,
                                                                   strict=True)]
        if sum(last - first + 1 for first, last in blocks) > MAX_TOUCHED:
            return None
        return {f"{n >> 16}.{(n >> 8) & 255}.{n & 255}" for first, last in blocks
                for n in range(first, last + 1)}
