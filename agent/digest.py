"""A feed copy's validated result in compact form: what parse and the guards made of it.

Parsing and guarding a million values costs seconds; a feed's payloads usually do not change
between two syncs. So the result is kept (agent/state/cache.py) under a key made of the
payloads' sha256 and everything that decided it (the feed's settings, the guards' inputs, the
agent's version): the same key is the same result, and a payload that did not change is never
parsed or guarded again. Compact because it lives between syncs: one list of strings per kind
of value, no Python object per indicator (an Indicator tuple costs about 200 bytes); the few
indicators that carry more than a value (an expiry, ...) are kept whole as `extras`.

The guards' verdicts depend on the time only through expiries, so a digest also says from
when until when it holds (`valid_from`, `valid_until`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.guards import EXPIRED, GuardReject, GuardResult
from agent.indicators import DOMAIN, IPV4, IPV6, Indicator, Reject
from agent.merge import Blocklist, add_plain, finish, merge
from agent.merge_scope import Blocks

KINDS = ("v4", "v4_nets", "v6", "v6_nets", "names", "wild")
SAMPLE = 20  # rejects kept per feed for status and the plan printout
# What an Indicator holds past its ref when it says nothing more than its value (no scope,
# action, ... of its own): such an indicator is a plain value in one of the KINDS.
_PLAIN_TAIL: tuple[Any, ...] = tuple(Indicator(IPV4, "")[5:])


def kind_of(ind: Indicator) -> str | None:
    """The KINDS list `ind` belongs to, or None when it must be kept whole (an extra)."""
    if ind.expires is not None or tuple(ind[5:]) != _PLAIN_TAIL:
        return None
    if ind.type == DOMAIN:
        return "wild" if ind.subdomains else "names"
    prefix = "/" in ind.value
    if ind.type == IPV4:
        return "v4_nets" if prefix else "v4"
    if ind.type == IPV6:
        return "v6_nets" if prefix else "v6"
    return None


@dataclass(frozen=True)
class Summary:
    """What status, the plan printout and the short path need: everything but the values."""

    key: str
    accepted: int  # accepted indicators, a value listed twice counted twice
    parsed: int  # entries read: accepted, malformed and refused
    parse_rejects: int
    reject_samples: tuple[Reject, ...] = ()
    guard_counts: Mapping[str, int] = field(default_factory=dict)
    guard_samples: tuple[GuardReject, ...] = ()
    extras: tuple[Indicator, ...] = ()
    valid_from: int | None = None  # the verdicts hold from this time (an expiry refused) ...
    valid_until: int | None = None  # ... until this one (the first expiry accepted)
    counts: Mapping[str, int] = field(default_factory=dict)  # unique values per kind

    def holds_at(self, now: int) -> bool:
        return ((self.valid_from is None or self.valid_from <= now)
                and (self.valid_until is None or now < self.valid_until))

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "accepted": self.accepted, "parsed": self.parsed,
            "parse_rejects": self.parse_rejects,
            "reject_samples": [list(r) for r in self.reject_samples],
            "guard_counts": dict(self.guard_counts),
            "guard_samples": [[list(g.indicator), g.reason, g.detail]
                              for g in self.guard_samples],
            "extras": [list(i) for i in self.extras],
            "valid_from": self.valid_from, "valid_until": self.valid_until,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            key=str(data["key"]), accepted=int(data["accepted"]), parsed=int(data["parsed"]),
            parse_rejects=int(data["parse_rejects"]),
            reject_samples=tuple(Reject(*r) for r in data["reject_samples"]),
            guard_counts={str(k): int(v) for k, v in data["guard_counts"].items()},
            guard_samples=tuple(GuardReject(Indicator(*g[0]), g[1], g[2])
                                for g in data["guard_samples"]),
            extras=tuple(Indicator(*i) for i in data["extras"]),
            valid_from=data["valid_from"], valid_until=data["valid_until"],
            counts={str(k): int(v) for k, v in data["counts"].items()},
        )


class Change(NamedTuple):
    """How a result differs from the one of the feed's previous copy (`base`, its ident), per
    kind: what the merge by difference (agent.merge_delta) needs instead of both lists."""

    base: str
    added: Mapping[str, frozenset[str]]
    removed: Mapping[str, frozenset[str]]


class Digest:
    """A Summary plus the accepted values per kind, read on first use (`values`).

    For a one-payload plain list read by the bulk path (agent.bulk), what the next copy's
    reading by difference needs (agent.bulk_delta; None otherwise): `special`, the rows it did
    not take as they are, and `special_lines`, their indexes in the payload's lines (None when
    not known: a cache file from before they were kept); `plain`, for "v4" and the feed's
    names kind, how many values at the head of the list are such rows, taken as they are;
    `known`, the special rows accepted as a plain value (row -> kind, value, provenance flag),
    whose verdict is not computed again.
    `change`: set when this result was read by difference, for this sync only (not cached).
    """

    __slots__ = ("_load", "_values", "change", "known", "plain", "special", "special_lines",
                 "summary")

    def __init__(self, summary: Summary,
                 values: Mapping[str, Sequence[str]] | Callable[[], Mapping[str, Sequence[str]]],
                 *, special: Sequence[str] | None = None, plain: Mapping[str, int] | None = None,
                 change: Change | None = None,
                 known: Mapping[str, tuple[str, str, str]] | None = None,
                 special_lines: Sequence[int] | None = None) -> None:
        self.summary = summary
        self._load = values if callable(values) else None
        self._values: Mapping[str, Sequence[str]] | None = None if callable(values) else values
        self.special = special
        self.special_lines = special_lines if special is not None else None
        self.plain = plain if special is not None else None
        self.known = known if special is not None else None
        self.change = change

    @property
    def key(self) -> str:
        return self.summary.key

    @property
    def ident(self) -> str:
        """What a record says of this result: its key, plus the time window its verdicts hold
        in when an expiry bounds them (recomputed past an expiry, the same key holds another
        result, which must never pass for the recorded one)."""
        s = self.summary
        if s.valid_from is None and s.valid_until is None:
            return s.key
        return f"{s.key}:{s.valid_from}-{s.valid_until}"

    def values(self, kind: str) -> Sequence[str]:
        if self._values is None:
            assert self._load is not None
            self._values = self._load()
        return self._values.get(kind, ())

    def release(self) -> None:
        """Drop the values once merged; a digest read from the cache reads them again if asked
        (one computed in this sync has nowhere to read them from, and keeps them)."""
        if self._load is not None:
            self._values = None

    def indicators(self) -> Iterator[Indicator]:
        """Every accepted value as an Indicator (slow: for code that needs them one by one)."""
        for kind in KINDS:
            for value in self.values(kind):
                yield _INDICATOR[kind](value)
        yield from self.summary.extras

    def add_to(self, blocks: Blocks) -> bool:
        """Put this feed's values into the merge's blocks, one C-speed update per kind; False
        when its extras hold an exception (agent.merge.add_plain: merge each feed apart)."""
        blocks.addrs[IPV4].update(self.values("v4"))
        blocks.nets[IPV4].update(self.values("v4_nets"))
        blocks.addrs[IPV6].update(self.values("v6"))
        blocks.nets[IPV6].update(self.values("v6_nets"))
        blocks.names.update(self.values("names"))
        blocks.wild.update(self.values("wild"))
        return add_plain(blocks, [self.summary.extras])


_INDICATOR: dict[str, Callable[[str], Indicator]] = {
    "v4": lambda v: Indicator(IPV4, v), "v4_nets": lambda v: Indicator(IPV4, v),
    "v6": lambda v: Indicator(IPV6, v), "v6_nets": lambda v: Indicator(IPV6, v),
    "names": lambda v: Indicator(DOMAIN, v), "wild": lambda v: Indicator(DOMAIN, v, True),
}


def from_checked(key: str, parsed: int, rejects: Sequence[Reject], guard: GuardResult,
                 accepted: Iterable[Indicator] | None = None) -> Digest:
    """The digest of indicators checked by the guards one by one (the general path)."""
    columns: dict[str, dict[str, None]] = {kind: {} for kind in KINDS}
    extras: list[Indicator] = []
    until: int | None = None
    count = 0
    for ind in guard.accepted if accepted is None else accepted:
        count += 1
        kind = kind_of(ind)
        if kind is None:
            extras.append(ind._replace(ref=""))
            if ind.expires is not None and (until is None or ind.expires < until):
                until = ind.expires
        else:
            columns[kind][ind.value] = None
    expired = [g.indicator.expires for g in guard.rejected
               if g.reason == EXPIRED and g.indicator.expires is not None]
    values = {kind: list(found) for kind, found in columns.items()}
    summary = Summary(
        key=key, accepted=count, parsed=parsed, parse_rejects=len(rejects),
        reject_samples=tuple(rejects[:SAMPLE]),
        guard_counts=dict(Counter(g.reason for g in guard.rejected)),
        guard_samples=tuple(guard.rejected[:SAMPLE]), extras=tuple(dict.fromkeys(extras)),
        valid_from=max(expired) if expired else None, valid_until=until,
        counts={kind: len(v) for kind, v in values.items()},
    )
    return Digest(summary, values)


def merged(digests: Sequence[Digest], others: Sequence[Sequence[Indicator]],
           allow: Iterable[Indicator] = ()) -> Blocklist:
    """agent.merge.merge of the digests' values plus `others` (indicators one by one: local
    denies), without an Indicator per value; each digest's values are released after. A feed
    listing exceptions (`rpz-passthru.`) takes merge's general path, each source on its own."""
    blocks = Blocks.empty()
    plain = True
    for digest in digests:
        plain = plain and digest.add_to(blocks)
        digest.release()
    if plain and add_plain(blocks, others):
        return finish(blocks, (set(), set()), allow)
    return merge([*(list(d.indicators()) for d in digests), *others], allow)
