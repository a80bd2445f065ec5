"""Plan: what would change against what was last applied, and whether it is safe to apply.

Like octoDNS's TooMuchChange, a plan that adds or removes more than `guards.max_change` of the
enforced entries is held: a publisher's mistake (an empty payload, a list of every address on
the internet) then needs a human's `--force`, while ordinary updates flow unattended. The first
plan from an empty state is never held: there is nothing to protect yet.
"""

from __future__ import annotations

from typing import NamedTuple

from agent.merge import ENFORCING, SET_NAMES, Blocklist

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

    @property
    def ratio(self) -> float:
        """The larger of added/before and removed/before."""
        if self.before == 0:
            return 0.0 if self.after == 0 else 1.0
        return max(self.added, self.removed) / self.before

    @property
    def held(self) -> str | None:
        """Why this plan must not be applied unattended, or None."""
        if self.first or self.forced or self.ratio <= self.max_change:
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
            "sets": {
                name: {"before": c.before, "after": c.after, "added": len(c.added),
                       "removed": len(c.removed)}
                for name, c in self.changes.items()
            },
        }


def make_plan(
    previous: Blocklist | None, new: Blocklist, *, max_change: float, force: bool = False
) -> Plan:
    old = previous if previous is not None else Blocklist()
    changes: dict[str, SetChange] = {}
    added = removed = 0
    for name, before, after in zip(SET_NAMES, old, new, strict=True):
        if before == after:
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
    )
