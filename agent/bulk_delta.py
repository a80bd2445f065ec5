"""The bulk path by difference: a new copy of a one-payload plain list read from the result of
the previous copy (kept in the cache), so that each row it already had costs little instead of
the scan, and the merge gets the change instead of two lists to compare.

A row's verdict depends on the row, the feed's settings and the guards' inputs only, and the
previous result was made under the same ones (its key says so: agent.feedcache). That result
knows its plain rows: the canonical values taken as they are, at the head of the v4 list and
of the feed's names list (`Digest.plain` says how many), and the rows it read one by one
(`Digest.special`: odd lines, values the guards looked at). In the new copy:

- a row that was plain is plain again, and stays in its list;
- every other row (new, or special before) is scanned and read as a full reading would, at
  its line number (rejects, refusals and provenance included);
- the plain rows the new copy no longer lists leave the lists.

Which rows were there before is found one of two ways:

- in order (`agent.align`), when the previous copy's text is at hand, its plain rows were
  unique and its special rows' line numbers are known: a list keeps its order from one copy
  to the next (sorted, or appended to), so the two copies are walked side by side, comparing
  runs of rows in C, and only the rows around a change are looked at one by one;
- by sets otherwise (the set of the previous plain rows, one lookup per row): any order.

Counts, samples, provenance and the special rows equal the full reading's; only the order of
values within a list may differ, which nothing reads (tests/unit/test_bulk.py compares both
readings). Past MAX_SHARE of rows to scan the full reading is used instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import filterfalse
from typing import NamedTuple

from agent import align
from agent.digest import KINDS, Change, Digest

MAX_SHARE = 0.25  # of the new copy's rows not plain before, past which every row is read
FEW = 16  # values looked for in the rows one by one (a C scan each) rather than in a set


class Shift:
    """A reading by difference under way; `scan`: the line indexes to scan, in line order;
    `way`: how the previous rows were found ("in order", "by sets")."""

    way = ""

    def __init__(self, scan: list[int], kinds: tuple[str, str], before: Digest,
                 heads: Mapping[str, int]) -> None:
        self.scan = scan
        self.heads = heads  # the previous result's Digest.plain
        self.kinds = kinds  # the kinds a plain row goes to: "v4" and the feed's names
        self.before = before

    def _gone(self, rows: list[str], maybe: set[str]) -> tuple[set[str], set[str]]:
        """(the previous plain rows the new copy no longer lists, those of `maybe` that are
        plain rows of the new copy)."""
        raise NotImplementedError

    def _held(self) -> set[str]:
        """Scanned rows that were plain rows of the previous copy, in its list already."""
        return set()

    def finish(self, rows: list[str], columns: dict[str, list[str]], scanned: Mapping[str, int],
               special: Sequence[str]) -> Finished:
        """Complete `columns`, which hold the plain rows the scan took (before `scanned`) then
        what the special rows gave (`special`, the new copy's): the change from the previous
        result, the new marks of the plain rows (Digest.plain), and the lists of "v4" and the
        names, built when first asked (`Finished.lists`: nothing before the apply needs a
        million values the change describes)."""
        was = self.before
        held_before = was.summary.counts  # unique values per kind: a kind it had none of is
        # not decoded (a result without counts is, whole)
        held = self._held()
        fresh = {kind: [v for v in dict.fromkeys(columns[kind][:scanned[kind]]) if v not in held]
                 for kind in self.kinds}
        tails = {kind: list(dict.fromkeys(columns[kind][scanned[kind]:])) for kind in self.kinds}
        # a special row's value that is also a plain row of the new copy is listed once: the
        # value of a row the guards looked at is that row, special too, never a plain one
        odd = set(special)
        gone, listed = self._gone(rows, {v for tail in tails.values() for v in tail
                                         if v not in odd})
        marks: dict[str, int] = {}
        sizes: dict[str, int] = {}
        tail_of: dict[str, list[str]] = {}
        added: dict[str, frozenset[str]] = {}
        removed: dict[str, frozenset[str]] = {}
        for kind in KINDS:
            values = columns[kind]
            if kind not in self.kinds:  # only special rows give these: small lists
                values[:] = dict.fromkeys(values)
                came = set(values)
                left = set(was.values(kind)) if held_before.get(kind, 1) else set()
            else:
                new = set(fresh[kind])
                tail = tail_of[kind] = [v for v in tails[kind] if v not in new and v not in listed]
                quad = kind == "v4"  # a canonical name never ends with a digit (agent.bulk)
                left = {v for v in gone if ("0" <= v[-1] <= "9") == quad}
                marks[kind] = self.heads[kind] - len(left) + len(fresh[kind])
                sizes[kind] = marks[kind] + len(tail)
                if held_before.get(kind, self.heads[kind] + 1) > self.heads[kind]:
                    left.update(was.values(kind)[self.heads[kind]:])  # what special rows gave
                came = new.union(tail)
            added[kind], removed[kind] = frozenset(came - left), frozenset(left - came)

        def lists() -> dict[str, list[str]]:
            out = {}
            for kind in self.kinds:
                head = was.values(kind)[:self.heads[kind]]
                values = list(filterfalse(gone.__contains__, head)) if gone else list(head)
                values.extend(fresh[kind])
                values.extend(tail_of[kind])
                out[kind] = values
            return out

        return Finished(Change(was.ident, added, removed), marks, sizes, lists)


class Finished(NamedTuple):
    """A reading by difference done: `sizes` and `lists` for "v4" and the feed's names."""

    change: Change
    marks: dict[str, int]
    sizes: dict[str, int]
    lists: Callable[[], dict[str, list[str]]]


class _BySets(Shift):
    way = "by sets"

    def __init__(self, scan: list[int], plain: set[str], kinds: tuple[str, str],
                 before: Digest, heads: Mapping[str, int]) -> None:
        super().__init__(scan, kinds, before, heads)
        self.plain = plain  # the previous plain rows

    def _gone(self, rows: list[str], maybe: set[str]) -> tuple[set[str], set[str]]:
        plain = self.plain
        was_plain = {v for v in maybe if v in plain}
        plain.difference_update(rows)  # now: the previous plain rows no longer listed
        return plain, {v for v in was_plain if v not in plain}


class _InOrder(Shift):
    way = "in order"

    def __init__(self, scan: list[int], gone: set[str], held: set[str],
                 kinds: tuple[str, str], before: Digest, heads: Mapping[str, int]) -> None:
        super().__init__(scan, kinds, before, heads)
        self.gone = gone
        self.held = held

    def _held(self) -> set[str]:
        return self.held

    def _gone(self, rows: list[str], maybe: set[str]) -> tuple[set[str], set[str]]:
        # a value of `maybe` is no row the guards looked at: listed as a row, it is plain
        few = len(maybe) <= FEW
        return self.gone, {v for v in maybe if v in rows} if few else maybe.intersection(rows)


def by_difference(rows: list[str], was: Digest, names: str,
                  old: list[str] | None = None) -> Shift | None:
    """The rows to scan, those that were not plain rows of the previous copy (`was`, its
    result; `old`, its rows when at hand); None when they are too many (MAX_SHARE) or that
    result does not know its rows."""
    heads = was.plain
    if was.special is None or heads is None or set(heads) != {"v4", names}:
        return None
    budget = MAX_SHARE * max(len(rows), 1)
    if old is not None and was.special_lines is not None:
        shift = _in_order(rows, old, was, heads, ("v4", names), budget)
        if shift is not None:
            return shift
    plain = set(was.values("v4")[:heads["v4"]])
    plain.update(was.values(names)[:heads[names]])
    scan = [i for i, row in enumerate(rows) if row not in plain]
    if len(scan) - len(was.special) > budget:
        return None
    return _BySets(scan, plain, ("v4", names), was, heads)


def _in_order(rows: list[str], old: list[str], was: Digest, heads: Mapping[str, int],
              kinds: tuple[str, str], budget: float) -> Shift | None:
    """The reading in order; None when it does not apply (the previous plain rows repeat, the
    copies do not share an order) and the sets must tell."""
    assert was.special is not None and was.special_lines is not None
    special_at = was.special_lines
    blank = old.count("")
    if (len(special_at) != len(was.special)
            or sum(heads[k] for k in kinds) != len(old) - blank - len(special_at)):
        return None  # a plain row listed twice: a removed copy may be listed still
    found = align.align(old, rows, budget)
    if found is None:
        return None
    runs, removed, inserted = found
    scan = sorted({*inserted, *align.carried(runs, special_at)})
    if len(scan) - len(special_at) > budget:
        return None
    odd = set(was.special)
    now = {rows[j] for j in inserted}
    gone = {old[i] for i in removed} - odd - now
    gone.discard("")
    # a row that came but was there before (moved, or listed twice now): one pass in C over
    # the previous rows, whose hashes a set of the few that came makes cheap to test
    held = now.intersection(old) - odd if now else set()
    held.discard("")
    return _InOrder(scan, gone, held, kinds, was, heads)
