"""Merge and plan by difference: when some feeds changed, the new blocklist is the recorded one
plus what those feeds' changes do to it, computed without building the million-entry sets.

The recorded blocklist P is merge(inputs then), and applied.json says which digest each feed
contributed and which local overrides were merged (meta "digests", "merge"). When the
overrides are the same and the changed feeds changed only single addresses and exact names
(no prefix, no wildcard, no value with an expiry or more: those reshape what covers what), a
value leaves or joins the union only if no unchanged feed lists it, and it is enforced iff the
same covering test as merge's passes (a prefix or allow covering the address; a blocked or
allowed parent domain covering the name). Anything else is left to the full merge, which gives
the same result at the cost of the whole list (tests/unit/test_merge_delta.py compares them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from agent.coverage import blocklist_share
from agent.digest import Digest
from agent.feedcache import stable
from agent.indicators import IPV4, IPV6, Indicator
from agent.ledger import LazyBlocklist
from agent.merge import ENFORCING, SET_NAMES, Blocklist, covering_parent
from agent.merge_scope import Blocks
from agent.netrange import AF_INET, AF_INET6, SpanSet, join, set_spans, spans, subtract
from agent.plan import Plan, SetChange
from agent.state import StateStore

# (kind in the digests, set of the blocklist, family) of what may change by difference
_SINGLES = (("v4", "v4", IPV4, AF_INET), ("v6", "v6", IPV6, AF_INET6))
_RESHAPING = ("v4_nets", "v6_nets", "wild")  # a change there is merged in full
# RPZ's finer scopes, actions and a feed's exceptions (agent/merge_scope.py): a record holding
# any of them is merged in full, as is a feed or a local deny listing them
_SCOPED = ("below", "pass_names", "pass_below", "drop", "nodata")
EMPTY: frozenset[str] = frozenset()


def ident(digest: Digest | None) -> str | None:
    return None if digest is None else digest.ident


def merge_print(deny: Iterable[Indicator], allow: Iterable[Indicator],
                allow_feeds: Iterable[str | None] = ()) -> str:
    """What applied.json's meta "merge" holds: the local overrides that were merged, and the
    digests of the known-good (`role: allow`) feeds."""
    text = stable([sorted(map(tuple, deny)), sorted(map(tuple, allow)), sorted(
        str(i) for i in allow_feeds)])
    return hashlib.sha256(text.encode()).hexdigest()


class Step(NamedTuple):
    blocklist: LazyBlocklist
    plan: Plan


def by_difference(record: tuple[Blocklist, Mapping[str, Any]] | None,
                  now: Mapping[str, Digest | None], store: StateStore, *,
                  deny: Sequence[Indicator], allow: Sequence[Indicator], merged_print: str,
                  max_change: float, force: bool, max_address_share: float = 1.0
                  ) -> Step | None:
    """The new blocklist and plan from the applied `record` and the digests in force `now`
    (feed name -> digest, None for a feed contributing nothing); None: merge in full."""
    if record is None or not isinstance(record[0], LazyBlocklist):
        return None
    previous: LazyBlocklist = record[0]
    meta = record[1]
    then = meta.get("digests")
    if (not isinstance(then, dict) or not previous.total or meta.get("merge") != merged_print
            or any(previous.counts()[name] for name in _SCOPED)
            or not _plain(deny) or not all(_plain(d.summary.extras) for d in now.values() if d)):
        return None
    changed = [name for name in sorted({*then, *now}) if ident(now.get(name)) != then.get(name)]
    if not changed:
        return None
    old: list[Digest] = []
    for name in changed:
        was = then.get(name)
        if was:
            found = store.digests.load(name, str(was).partition(":")[0])
            if found is None or ident(found) != was:  # gone, or recomputed since
                return None
            old.append(found)
    new = [d for name in changed if (d := now.get(name)) is not None]
    if any(d.summary.extras for d in (*old, *new)):
        return None
    others = [d for name, d in now.items() if name not in changed and d is not None]
    union = _Others(others, [*deny, *(i for d in others for i in d.summary.extras)])
    if any(_moved(kind, old, new, union) != (EMPTY, EMPTY) for kind in _RESHAPING):
        return None
    changes: dict[str, SetChange] = {}
    for kind, set_name, family_name, family in _SINGLES:
        joined, left = _moved(kind, old, new, union)
        if joined or left:
            covering = _covering(previous, union, new, kind + "_nets", allow, family_name,
                                 family)
            changes[set_name] = _change(previous, set_name,
                                        covering.outside(joined), covering.outside(left))
    joined, left = _moved("names", old, new, union)
    if joined or left:
        keep = _name_filter(previous)
        changes["names"] = _change(previous, "names", {n for n in joined if keep(n)},
                                   {n for n in left if keep(n)})
    plan = _plan(previous, changes, max_change, force, max_address_share)
    return Step(previous.after(plan.changes), plan)


class _Others:
    """Membership in the union of the feeds that did not change (their values, their extras,
    and the local denies), asked only for the values the changed feeds moved."""

    def __init__(self, digests: Sequence[Digest], loose: Sequence[Indicator]) -> None:
        self.digests = digests
        self.deny = Blocks.empty()
        for ind in loose:
            self.deny.add(ind)

    def hits(self, kind: str, probe: frozenset[str]) -> set[str]:
        found: set[str] = set()
        if not probe:
            return found
        for digest in self.digests:
            found |= probe.intersection(digest.values(kind))
        found |= probe & _kind_set(self.deny, kind)
        return found

    def values(self, kind: str) -> set[str]:
        out = set(_kind_set(self.deny, kind))
        for digest in self.digests:
            out.update(digest.values(kind))
        return out


def _kind_set(union: Blocks, kind: str) -> set[str]:
    family = IPV6 if kind.startswith("v6") else IPV4
    return {"v4": union.addrs[IPV4], "v6": union.addrs[IPV6], "v4_nets": union.nets[family],
            "v6_nets": union.nets[family], "names": union.names, "wild": union.wild}[kind]


def _moved(kind: str, old: Sequence[Digest], new: Sequence[Digest], others: _Others
           ) -> tuple[frozenset[str], frozenset[str]]:
    """(joined, left): the values of `kind` entering and leaving the sources' union."""
    came, went = _difference(kind, old, new)
    listed = others.hits(kind, came | went)
    return frozenset(came - listed), frozenset(went - listed)


def _difference(kind: str, old: Sequence[Digest], new: Sequence[Digest]
                ) -> tuple[frozenset[str], frozenset[str]]:
    """(came, went) of `kind` between the old and new results of the changed feeds: as the
    new result says when it was read by difference from the old one (agent.bulk_delta)."""
    change = new[0].change if len(new) == 1 and len(old) == 1 else None
    if change is not None and change.base == old[0].ident:
        return change.added[kind], change.removed[kind]
    before: set[str] = set()
    for digest in old:
        before.update(digest.values(kind))
    after: set[str] = set()
    for digest in new:
        after.update(digest.values(kind))
    return frozenset(after - before), frozenset(before - after)


def _covering(previous: LazyBlocklist, others: _Others, new: Sequence[Digest], kind: str,
              allow: Sequence[Indicator], family_name: str, family: int) -> SpanSet:
    """merge's covering test for single addresses: the blocked prefixes (unchanged, so taken
    from any side) and the allowed addresses and prefixes of the family."""
    allowed = [i.value for i in allow if i.type == family_name]
    if not allowed:  # then the record's prefixes are exactly the blocked space: nothing was
        # carved, and spans of prefixes of /31 or shorter never leave a single address
        return SpanSet(family, list(set_spans(getattr(previous, kind), family)))
    nets = others.values(kind)
    for digest in new:
        nets.update(digest.values(kind))
    holes = spans(allowed, family)
    blocked = subtract(spans(nets, family), holes) if holes else spans(nets, family)
    # a /32 that carving leaves is enforced whatever the feeds list; it lies inside `blocked`,
    # so it is covered here and never joins or leaves by a feed's change
    return SpanSet(family, join(sorted([*blocked, *holes])))


def _name_filter(previous: LazyBlocklist):  # type: ignore[no-untyped-def]
    """merge's test for an exact name: not allowed, not under an allowed or blocked wildcard."""
    wild, allow_names, allow_wild = previous.wild, previous.allow_names, previous.allow_wild

    def keep(name: str) -> bool:
        return (name not in allow_names and name not in allow_wild and name not in wild
                and covering_parent(name, allow_wild) is None
                and covering_parent(name, wild) is None)

    return keep


def _change(previous: LazyBlocklist, name: str, added: Iterable[str], removed: Iterable[str]
            ) -> SetChange:
    before = previous.counts()[name]
    plus, minus = frozenset(added), frozenset(removed)
    return SetChange(plus, minus, before, before + len(plus) - len(minus))


def _plain(indicators: Iterable[Indicator]) -> bool:
    """No RPZ scope or action of its own (an expiry is fine: only a value's presence moves)."""
    return all(not i.action and not i.below for i in indicators)


def _plan(previous: LazyBlocklist, changes: dict[str, SetChange], max_change: float,
          force: bool, max_address_share: float) -> Plan:
    counts = previous.counts()
    full = {name: changes.get(name, SetChange(EMPTY, EMPTY, counts[name], counts[name]))
            for name in SET_NAMES}
    added = sum(len(full[n].added) for n in ENFORCING)
    removed = sum(len(full[n].removed) for n in ENFORCING)
    before = previous.total
    return Plan(changes=full, first=False, before=before, after=before + added - removed,
                added=added, removed=removed, max_change=max_change, forced=force,
                share=blocklist_share(previous.after(changes)),
                previous_share=blocklist_share(previous), max_address_share=max_address_share)
