"""Merge: every feed's accepted indicators plus local overrides into one enforceable blocklist.

The output is shaped for the kernel and the resolver, not for people: single addresses apart
from prefixes (hash sets vs interval sets), prefixes aggregated so that no two overlap (nft
rejects overlapping elements and its auto-merge makes later deletes fail, docs/design.md §6),
addresses already covered by a prefix dropped, names covered by a blocked parent dropped. Local
allows win over everything and are kept for `rpz-passthru.`.

Names keep RPZ's three scopes (the name, the name and below, below only) and the action a feed
wrote (`rpz-drop.`, NODATA; otherwise the operator's `dns.action`). An exception a feed lists
(`rpz-passthru.`) only ever exempts from that same feed's blocks (`agent/merge_scope.py`): it is
never a block, and never unblocks what another feed or a local deny blocks.

Provenance (which feed, serial and line) is not carried here: it is recorded per feed by the
state and looked up by `why`, which keeps a million-entry merge cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from agent.indicators import DOMAIN, DROP, IPV4, IPV6, NODATA, Indicator
from agent.merge_scope import ACTION_RANK as _RANK
from agent.merge_scope import Blocks, scoped_blocks
from agent.merge_scope import covering_parent as covering_parent  # plan, why and tests use it
from agent.netrange import AF_INET, AF_INET6, SpanSet, join, known_spans, spans, subtract, to_cidrs
from agent.netrange import aggregate as aggregate  # the kill switch's allowlist uses it too

# Appended, never reordered: applied.json and the DNS fingerprints are read by these names.
SET_NAMES = ("v4", "v4_nets", "v6", "v6_nets", "names", "wild", "allow_names", "allow_wild",
             "allow_ips", "below", "pass_names", "pass_below", "drop", "nodata")
# The sets whose entries block (counted, and compared by max_change); the others allow,
# exempt, or choose the action of names counted already.
ENFORCING = ("v4", "v4_nets", "v6", "v6_nets", "names", "wild", "below")


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
    below: frozenset[str] = frozenset()  # only the names below these are blocked (`*.name`)
    pass_names: frozenset[str] = frozenset()  # a feed's exceptions under its own wildcard
    pass_below: frozenset[str] = frozenset()  # ... for the names below (`*.name rpz-passthru.`)
    drop: frozenset[str] = frozenset()  # blocked names (any scope) a feed said to drop
    nodata: frozenset[str] = frozenset()  # ... to answer with NODATA

    def counts(self) -> dict[str, int]:
        return {name: len(values) for name, values in zip(SET_NAMES, self, strict=True)}

    @property
    def total(self) -> int:
        """Enforced entries (allow and exception entries are not counted: they block nothing;
        drop and nodata only qualify names counted already)."""
        return sum(len(getattr(self, name)) for name in ENFORCING)

    def to_json(self) -> dict[str, list[str]]:
        return {name: sorted(values) for name, values in zip(SET_NAMES, self, strict=True)}

    @classmethod
    def from_json(cls, data: dict[str, list[str]]) -> Blocklist:
        return cls(*(frozenset(data.get(name, ())) for name in SET_NAMES))


def merge(sources: Iterable[Iterable[Indicator]], allow: Iterable[Indicator] = ()) -> Blocklist:
    """Union of all sources (feeds and local denies), minus the allows, deduplicated."""
    listed = [s if isinstance(s, (list, tuple)) else list(s) for s in sources]
    blocks = Blocks.empty()
    if not add_plain(blocks, listed):  # some feed lists exceptions: each source on its own
        return finish(*scoped_blocks(listed), allow)
    return finish(blocks, (set(), set()), allow)


def finish(blocks: Blocks, passes: tuple[set[str], set[str]],
           allow: Iterable[Indicator] = ()) -> Blocklist:
    """The blocklist from the sources' blocks: prefixes aggregated, covered entries dropped,
    the allows carved out. `blocks` is never changed in place (agent.digest fills it from the
    compact feed results, whose sets it may share)."""
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
        out_addrs[kind], out_nets[kind] = _addresses(
            blocks.addrs[kind], blocks.nets[kind], allowed, family)

    names, wild, below = blocks.names, blocks.wild, blocks.below
    both = names & below  # the name and, from another line or feed, the names below it
    if both:
        wild, names, below = wild | both, names - both, below - both
    if allow_names:
        names, wild = names - allow_names, wild - allow_names
    pass_names, pass_below = passes
    names, wild, below = _drop_covered(names, wild, below, allow_wild, pass_below)
    blocked = (wild, below)
    pass_names = {n for n in pass_names if _parent_in(n, blocked) and n not in allow_names}
    pass_below = {n for n in pass_below if _parent_in(n, blocked)}
    actions = blocks.actions
    return Blocklist(
        v4=out_addrs[IPV4], v4_nets=out_nets[IPV4], v6=out_addrs[IPV6], v6_nets=out_nets[IPV6],
        names=frozenset(names), wild=frozenset(wild), allow_names=frozenset(allow_names),
        allow_wild=frozenset(allow_wild), allow_ips=frozenset(allow_ips),
        below=frozenset(below), pass_names=frozenset(pass_names),
        pass_below=frozenset(pass_below),
        drop=frozenset(_acted(actions, DROP, names, wild, below)),
        nodata=frozenset(_acted(actions, NODATA, names, wild, below)),
    )


def add_plain(blocks: Blocks, sources: Iterable[Iterable[Indicator]]) -> bool:
    """Every source's blocks into `blocks`, one set per kind: the bulk path, one pass and a few
    attribute tests per value. False (and `blocks` incomplete) as soon as some source lists an
    exception: then the sources must be read each on its own (exceptions are scoped to their
    feed, agent/merge_scope.py)."""
    addrs, nets, names, wild, below, actions = (
        blocks.addrs, blocks.nets, blocks.names, blocks.wild, blocks.below, blocks.actions)
    for source in sources:
        for ind in source:
            if ind.action:
                if ind.action not in _RANK:
                    return False  # an exception
                if ind.type == DOMAIN and _RANK[ind.action] > _RANK.get(
                        actions.get(ind.value, ""), 0):
                    actions[ind.value] = ind.action
            if ind.type == DOMAIN:
                if not ind.subdomains:
                    names.add(ind.value)
                else:
                    (below if ind.below else wild).add(ind.value)
            elif "/" in ind.value:
                nets[ind.type].add(ind.value)
            else:
                addrs[ind.type].add(ind.value)
    return True


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
    prefixes = frozenset(c for c in cidrs if "/" in c)
    if not carved:  # then the prefixes span exactly `blocked`, which the share reads next
        known_spans(prefixes, family, blocked)
    return frozenset(kept | carved), prefixes


def name_trigger(bl: Blocklist, name: str) -> tuple[str, str] | None:
    """The blocking record RPZ applies to `name`, as a resolver picks it: (set, owner name) for
    an exact owner in names or wild, else for the longest wildcard (wild or below); None when
    nothing blocks it or the record picked is a passthru (a local allow, a feed's exception)."""
    if name in bl.names:
        return "names", name
    if name in bl.wild:
        return "wild", name
    if name in bl.allow_names or name in bl.pass_names:
        return None
    idx = name.find(".")
    while idx >= 0:
        parent = name[idx + 1:]
        if parent in bl.allow_wild or parent in bl.pass_below:
            return None
        if parent in bl.wild:
            return "wild", parent
        if parent in bl.below:
            return "below", parent
        idx = name.find(".", idx + 1)
    return None


def _parent_in(name: str, groups: Iterable[set[str] | frozenset[str]]) -> bool:
    return any(covering_parent(name, group) is not None for group in groups)


def _kept(name: str, covering: set[str], allow_wild: set[str], passes: set[str]) -> bool:
    """Is `name` needed in the zone: not under a local wildcard allow, and not already blocked by
    a wildcard parent, unless a feed's exception lies between them (RPZ picks the longest
    wildcard: without its own record, the name would fall under the exception)."""
    if allow_wild and (name in allow_wild or covering_parent(name, allow_wild)):
        return False
    parent = covering_parent(name, covering) if covering else None
    if parent is None:
        return True
    if passes:
        idx = name.find(".")
        while idx >= 0 and name[idx + 1:] != parent:
            if name[idx + 1:] in passes:
                return True
            idx = name.find(".", idx + 1)
    return False


def _drop_covered(names: set[str], wild: set[str], below: set[str], allow_wild: set[str],
                  passes: set[str]) -> tuple[set[str], set[str], set[str]]:
    """Drop names a wildcard parent already blocks, and names under a local wildcard allow.

    A name blocked with its subdomains (wild) also covers the exact name itself, so a `names`
    entry equal to a wild one goes; one equal to a below-only entry was joined into wild first.
    """
    covering = wild | below if below else wild
    if not covering and not allow_wild:
        return names, wild, below
    names = {n for n in names if n not in wild and _kept(n, covering, allow_wild, passes)}
    wild = {n for n in wild if _kept(n, covering, allow_wild, passes)}
    below = {n for n in below if n not in wild and _kept(n, covering, allow_wild, passes)}
    return names, wild, below


def _acted(actions: dict[str, str], action: str, *groups: set[str]) -> set[str]:
    return {n for n, a in actions.items() if a == action and any(n in g for g in groups)}
