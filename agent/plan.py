"""Plan: what would change against what was last applied, and whether it is safe to apply.

Like octoDNS's TooMuchChange, a plan that adds or removes more than `guards.max_change` of the
enforced entries is held: a publisher's mistake (an empty payload, a list of every address on
the internet) then needs a human's `--force`, while ordinary updates flow unattended. The first
plan from an empty state is not held for its size: there is nothing to protect yet. What it adds
up to is another matter: a plan that blocks more of the public address space than
`guards.max_address_share` (agent/coverage.py) is held whatever its size, the first one too.

A hold never delays de-escalation: `deescalation` is the part of a held plan that only unblocks
(a local allow, an undeny, entries a feed removed), which the pipeline applies at once, because a
false positive cutting a hospital service must not wait for someone to review an addition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from agent.coverage import Share, blocklist_share
from agent.indicators import DOMAIN, DROP, IPV4, IPV6, NODATA, PASSTHRU, Indicator
from agent.merge import ENFORCING, SET_NAMES, Blocklist, covering_parent, merge, name_trigger
from agent.netrange import AF_INET, AF_INET6, SpanSet, intersect, spans, to_cidrs

# Below this many enforced entries the ratio means little (one local allow that splits a /24
# into seven prefixes is "57 %" of a list of twelve): like octoDNS, small sets are not held.
MIN_ENTRIES_FOR_HOLD = 10


class SetChange(NamedTuple):
    added: frozenset[str]
    removed: frozenset[str]
    before: int
    after: int


class Plan(NamedTuple):
    changes: dict[str, SetChange]
    first: bool
    before: int  # enforced entries before
    after: int
    added: int
    removed: int
    max_change: float
    forced: bool
    share: Share = Share()
    previous_share: Share = Share()
    max_address_share: float = 1.0
    contributors: tuple[str, ...] = ()  # who weighs most, when the share is over the limit

    @property
    def share_over(self) -> list[tuple[str, float]]:
        """(family, share) above `max_address_share` and above what is enforced already (a
        share once forced through is not held again until it grows)."""
        return [(kind, now) for kind, now, before in (
            ("IPv4", self.share.v4, self.previous_share.v4),
            ("IPv6", self.share.v6, self.previous_share.v6),
        ) if now > self.max_address_share and now > before + 1e-12]

    @property
    def ratio(self) -> float:
        """The larger of added/before and removed/before."""
        if self.before == 0:
            return 0.0 if self.after == 0 else 1.0
        return max(self.added, self.removed) / self.before

    @property
    def held(self) -> str | None:
        """Why this plan must not be applied unattended, or None."""
        if self.forced:
            return None
        over = self.share_over
        if over:
            text = "the merged blocklist would block " + " and ".join(
                f"{value:.2%} of public {kind} space" for kind, value in over) + (
                f", more than guards.max_address_share ({self.max_address_share:.2%})")
            return "; ".join([text, *self.contributors])
        if self.first or self.ratio <= self.max_change:
            return None
        if self.before < MIN_ENTRIES_FOR_HOLD and self.after > 0:
            return None
        return (
            f"the plan changes {self.ratio:.0%} of the {self.before} enforced entries "
            f"(+{self.added} -{self.removed}), more than guards.max_change "
            f"({self.max_change:.0%})"
        )

    @property
    def empty(self) -> bool:
        return all(not c.added and not c.removed for c in self.changes.values())

    def summary(self) -> dict[str, object]:
        return {
            "first": self.first, "before": self.before, "after": self.after,
            "added": self.added, "removed": self.removed, "ratio": round(self.ratio, 4),
            "held": self.held, "forced": self.forced,
            "address_share": {"v4": self.share.v4, "v6": self.share.v6},
            "max_address_share": self.max_address_share,
            "sets": {
                name: {"before": c.before, "after": c.after, "added": len(c.added),
                       "removed": len(c.removed)}
                for name, c in self.changes.items()
            },
        }


def make_plan(
    previous: Blocklist | None, new: Blocklist, *, max_change: float, force: bool = False,
    max_address_share: float = 1.0,
) -> Plan:
    old = previous if previous is not None else Blocklist()
    changes: dict[str, SetChange] = {}
    added = removed = 0
    for name, before, after in zip(SET_NAMES, old, new, strict=True):
        if not before or not after:  # a first sync: the set itself, not a copy of it
            change = SetChange(after, before, len(before), len(after))
        elif before == after:
            change = SetChange(frozenset(), frozenset(), len(before), len(after))
        else:
            change = SetChange(after - before, before - after, len(before), len(after))
        changes[name] = change
        if name in ENFORCING:
            added += len(change.added)
            removed += len(change.removed)
    return Plan(
        changes=changes, first=previous is None, before=old.total, after=new.total,
        added=added, removed=removed, max_change=max_change, forced=force,
        share=blocklist_share(new), previous_share=blocklist_share(old),
        max_address_share=max_address_share,
    )


def deescalation(previous: Blocklist, new: Blocklist) -> Blocklist:
    """What `previous` becomes when only the unblocking part of `new` is taken: every entry of
    `previous` that `new` still blocks (by itself, a covering prefix or a wildcard parent), and
    the local allows of both. Nothing that `previous` did not block is blocked."""
    v4, v4_nets = _still_blocked(previous.v4, previous.v4_nets, new.v4, new.v4_nets, AF_INET)
    v6, v6_nets = _still_blocked(previous.v6, previous.v6_nets, new.v6, new.v6_nets, AF_INET6)
    names = {n for n in previous.names if name_trigger(new, n) is not None}
    wild: set[str] = set()
    below: set[str] = set()
    for w in (*previous.wild, *previous.below):
        subtree = w in new.wild or w in new.below or _under(w, new.wild, new.below)
        if subtree:  # the names below stay blocked (new's exceptions under it come along)
            (wild if w in previous.wild and name_trigger(new, w) else below).add(w)
        elif w in previous.wild and name_trigger(new, w) is not None:
            names.add(w)  # narrowed to the name alone: its subdomains are unblocked
    kept = names | wild | below
    return Blocklist(
        v4=v4, v4_nets=v4_nets, v6=v6, v6_nets=v6_nets, names=frozenset(names),
        wild=frozenset(wild), allow_names=previous.allow_names | new.allow_names,
        allow_wild=previous.allow_wild | new.allow_wild,
        allow_ips=previous.allow_ips | new.allow_ips, below=frozenset(below),
        # exceptions only unblock: both sides' apply at once
        pass_names=previous.pass_names | new.pass_names,
        pass_below=previous.pass_below | new.pass_below,
        drop=previous.drop & kept, nodata=previous.nodata & kept,
    )


def _under(name: str, *groups: frozenset[str]) -> bool:
    return any(covering_parent(name, group) is not None for group in groups)


def allowed_only(previous: Blocklist, allow: Iterable[Indicator]) -> Blocklist:
    """`previous` with the local allows carved out and nothing else changed: what a held plan
    applies at once when its removals alone are too many to trust (an emptied feed)."""
    def action(name: str) -> str:
        return DROP if name in previous.drop else NODATA if name in previous.nodata else ""

    entries = [
        *(Indicator(IPV4, v) for v in (*previous.v4, *previous.v4_nets)),
        *(Indicator(IPV6, v) for v in (*previous.v6, *previous.v6_nets)),
        *(Indicator(DOMAIN, v, action=action(v)) for v in previous.names),
        *(Indicator(DOMAIN, v, True, action=action(v)) for v in previous.wild),
        *(Indicator(DOMAIN, v, True, below=True, action=action(v)) for v in previous.below),
        # the exceptions as they were: one source, so they scope to these very blocks
        *(Indicator(DOMAIN, v, action=PASSTHRU) for v in previous.pass_names),
        *(Indicator(DOMAIN, v, True, below=True, action=PASSTHRU) for v in previous.pass_below),
    ]
    return merge([entries], allow=allow)


def _still_blocked(singles: frozenset[str], nets: frozenset[str], new_singles: frozenset[str],
                   new_nets: frozenset[str], family: int
                   ) -> tuple[frozenset[str], frozenset[str]]:
    """(addresses, prefixes) of the old entries, cut down to what the new ones block."""
    if singles == new_singles and nets == new_nets:
        return singles, nets
    blocked = spans([*new_nets, *new_singles], family)
    kept = singles - SpanSet(family, blocked).outside(singles) if blocked else frozenset()
    pieces = to_cidrs(intersect(spans(nets, family), blocked), family)
    return (frozenset(kept | {p for p in pieces if "/" not in p}),
            frozenset(p for p in pieces if "/" in p))
