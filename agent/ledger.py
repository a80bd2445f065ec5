"""The enforced blocklist as a base snapshot plus the changes made since (docs/design.md §12).

A million entries cost about a second each time they are turned into Python sets, sorted or
written whole, while a sync usually changes a few thousand. So what was applied is kept as a
base (written rarely) and the cumulative difference from it (rewritten at every sync), and a
`LazyBlocklist` stands for the result: a real `Blocklist` to every caller, whose sets are only
built when someone reads them. Counting, planning against it and recording it again cost what
the change costs; the base is rewritten (compacted) once the difference has grown large.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from agent.merge import ENFORCING, SET_NAMES, Blocklist

if TYPE_CHECKING:  # the plan's types only: the kill switch reads the record without them
    from agent.plan import Plan, SetChange

Sets = Mapping[str, frozenset[str]]
EMPTY: frozenset[str] = frozenset()
FEW_SEARCHES = 16  # values looked for in a base's text, past which its set is built instead


def _in_lines(blob: str, value: str) -> bool:
    """Is `value` one of the "\n"-separated lines of `blob` (a search, no copy of it)?"""
    return (blob == value or blob.startswith(value + "\n") or blob.endswith("\n" + value)
            or f"\n{value}\n" in blob)


def members(blocklist: Blocklist, name: str, values: Iterable[str]) -> frozenset[str]:
    """The `values` that set `name` of `blocklist` holds, built only if it must be."""
    if isinstance(blocklist, LazyBlocklist):
        return blocklist.holding(name, values)
    current: frozenset[str] = getattr(blocklist, name)
    return frozenset(v for v in values if v in current)
# The difference is folded into a new base once it holds this share of the entries (or, for a
# small list, this many entries): past that, rewriting it at every sync costs more than a base.
COMPACT_SHARE = 0.10
COMPACT_MIN = 20_000


class Delta(NamedTuple):
    """Per set: the values added since the base (not in it) and removed from it."""

    added: Sets
    removed: Sets

    @classmethod
    def empty(cls) -> Delta:
        return cls({}, {})

    def size(self) -> int:
        return sum(map(len, self.added.values())) + sum(map(len, self.removed.values()))

    def then(self, changes: Mapping[str, SetChange]) -> Delta:
        """This difference followed by `changes` (made against base + this difference).

        With C = (B - R) | A, and a change adding `a` (not in C) and removing `r` (in C): a
        value removed that was added since the base is simply no longer added, one re-added
        that was in the base is no longer removed. Only the small sets are ever touched.
        """
        added, removed = dict(self.added), dict(self.removed)
        for name, change in changes.items():
            if not change.added and not change.removed:
                continue
            plus, minus = added.get(name, EMPTY), removed.get(name, EMPTY)
            added[name] = (plus - change.removed) | (change.added - minus)
            removed[name] = (minus - change.added) | (change.removed - plus)
        return Delta({k: v for k, v in added.items() if v},
                     {k: v for k, v in removed.items() if v})

    def to_json(self) -> dict[str, Any]:
        return {"added": {k: sorted(v) for k, v in self.added.items()},
                "removed": {k: sorted(v) for k, v in self.removed.items()}}

    @classmethod
    def from_json(cls, data: Any) -> Delta:
        if not isinstance(data, dict):
            raise ValueError("the difference is not an object")
        parts = []
        for key in ("added", "removed"):
            part = data.get(key) or {}
            if not isinstance(part, dict) or any(
                    k not in SET_NAMES or not isinstance(v, list) for k, v in part.items()):
                raise ValueError(f"bad {key!r} in the difference")
            parts.append({k: frozenset(map(str, v)) for k, v in part.items()})
        return cls(parts[0], parts[1])


def count_after(counts: Mapping[str, int], changes: Mapping[str, SetChange]) -> dict[str, int]:
    """The size of every set once `changes` are made."""
    out = {name: int(counts.get(name, 0)) for name in SET_NAMES}
    for name, change in changes.items():
        out[name] += len(change.added) - len(change.removed)
    return out


class LazyBlocklist(Blocklist):
    """A `Blocklist` read from a base and a difference, each set built on first use.

    It behaves as the Blocklist it stands for (attributes, iteration, equality, `_replace`,
    pickling give the real values); `counts()` and `total` come from the record without
    building anything. `base` reads the base (once, when a set is first read): one text blob
    per set, "\n"-separated, turned into a set only for the sets read.
    """

    _base: Callable[[], Mapping[str, str]]
    _delta: Delta
    _counts: dict[str, int]
    _built: dict[str, frozenset[str]]
    _base_sets: Mapping[str, str] | None

    def __new__(cls, base: Callable[[], Mapping[str, str]], delta: Delta,
                counts: Mapping[str, int], built: Mapping[str, frozenset[str]] | None = None,
                ) -> LazyBlocklist:
        self = tuple.__new__(cls, (EMPTY,) * len(SET_NAMES))
        self._base = base
        self._delta = delta
        self._counts = {name: int(counts.get(name, 0)) for name in SET_NAMES}
        self._built = dict(built or {})
        self._base_sets = None
        return self

    @property
    def delta(self) -> Delta:
        """The difference from the base (what a record of this blocklist writes)."""
        return self._delta

    def base_loader(self) -> Callable[[], Mapping[str, str]]:
        return self._base

    def _set(self, name: str) -> frozenset[str]:
        found = self._built.get(name)
        if found is None:
            if self._base_sets is None:
                self._base_sets = self._base()
            blob = self._base_sets.get(name, "")
            base = frozenset(blob.split("\n")) if blob else EMPTY
            minus = self._delta.removed.get(name, EMPTY)
            plus = self._delta.added.get(name, EMPTY)
            found = (base - minus) | plus if minus or plus else base
            self._built[name] = found
        return found

    def holding(self, name: str, values: Iterable[str]) -> frozenset[str]:
        """The `values` that set `name` holds. A set not built yet is not built for a few
        values (a DNS update asks about the owners a plan touched, a million-name set costs
        half a second to build): the difference answers, then a search of the base's text."""
        found = self._built.get(name)
        if found is not None:
            return frozenset(v for v in values if v in found)
        values = list(values)  # read twice below
        plus = self._delta.added.get(name, EMPTY)
        minus = self._delta.removed.get(name, EMPTY)
        held = {v for v in values if v in plus}
        rest = [v for v in values if v not in plus and v not in minus]
        if len(rest) > FEW_SEARCHES:
            found = self._set(name)
            return frozenset(held.union(v for v in rest if v in found))
        if rest:
            if self._base_sets is None:
                self._base_sets = self._base()
            blob = self._base_sets.get(name, "")
            held.update(v for v in rest if _in_lines(blob, v))
        return frozenset(held)

    def after(self, changes: Mapping[str, SetChange],
              built: Mapping[str, frozenset[str]] | None = None) -> LazyBlocklist:
        """This blocklist with `changes` made (the plan's), sharing the same base; `built`
        gives sets already at hand (a full merge) so that nothing is rebuilt twice."""
        known = dict(built or {})
        for name, found in self._built.items():
            change = changes.get(name)
            if name not in known and (change is None or not (change.added or change.removed)):
                known[name] = found
        return LazyBlocklist(self._base, self._delta.then(changes),
                             count_after(self._counts, changes), known)

    def loaded(self) -> list[str]:
        """The sets built so far (for tests of what a sync had to read)."""
        return sorted(self._built)

    # -- behave as the Blocklist it stands for ----------------------------------------------
    def __iter__(self) -> Iterator[frozenset[str]]:
        return (self._set(name) for name in SET_NAMES)

    def __getitem__(self, index: Any) -> Any:
        return tuple(self)[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple) and tuple(self) == tuple(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LazyBlocklist({self.counts()})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Blocklist, tuple(self))

    @classmethod
    def _make(cls, iterable: Any) -> Blocklist:  # type: ignore[override]
        return Blocklist._make(iterable)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts[name] for name in ENFORCING)


def following(baseline: Blocklist | None, plan: Plan, new: Blocklist) -> Blocklist:
    """`new` as it is recorded and handed to the backends: when the plan was made against the
    recorded blocklist, that record's base plus the plan's changes (recorded at their cost),
    with the sets already built kept."""
    if isinstance(baseline, LazyBlocklist):
        return baseline.after(plan.changes, built=dict(zip(SET_NAMES, new, strict=True)))
    return new


def _field(name: str) -> property:
    return property(lambda self: self._set(name), doc=f"the {name} set, built on first use")


for _name in SET_NAMES:
    setattr(LazyBlocklist, _name, _field(_name))
