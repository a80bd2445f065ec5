"""The bulk path by difference: a new copy of a one-payload plain list read from the result of
the previous copy (kept in the cache), so that each row it already had costs one set lookup
instead of the scan, and the merge gets the change instead of two lists to compare.

A row's verdict depends on the row, the feed's settings and the guards' inputs only, and the
previous result was made under the same ones (its key says so: agent.feedcache). That result
knows its plain rows: the canonical values taken as they are, at the head of the v4 list and
of the feed's names list (`Digest.plain` says how many), and the rows it read one by one
(`Digest.special`: odd lines, values the guards looked at). In the new copy:

- a row that was plain is plain again: one set lookup, and it stays in its list;
- every other row (new, or special before) is scanned and read as a full reading would, at
  its line number (rejects, refusals and provenance included);
- the plain rows the new copy no longer lists leave the lists.

Counts, samples, provenance and the special rows equal the full reading's; only the order of
values within a list may differ, which nothing reads (tests/unit/test_bulk.py compares both
readings). Past MAX_SHARE of rows to scan the full reading is used instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.digest import KINDS, Change, Digest

MAX_SHARE = 0.25  # of the new copy's rows not plain before, past which every row is read


class Shift:
    """A reading by difference under way; `scan`: the line indexes to scan, in line order."""

    def __init__(self, scan: list[int], plain: set[str], kinds: tuple[str, str],
                 before: Digest, heads: Mapping[str, int]) -> None:
        self.scan = scan
        self.heads = heads  # the previous result's Digest.plain
        self.plain = plain  # the previous plain rows; once finished, those gone since
        self.kinds = kinds  # the kinds a plain row goes to: "v4" and the feed's names
        self.before = before

    def finish(self, rows: list[str], columns: dict[str, list[str]], scanned: Mapping[str, int]
               ) -> tuple[Change, dict[str, int]]:
        """Complete `columns`, which hold the plain rows the scan took (before `scanned`) then
        what the special rows gave: the change from the previous result, and the new marks
        of the plain rows (Digest.plain)."""
        was, plain = self.before, self.plain
        fresh = {kind: list(dict.fromkeys(columns[kind][:scanned[kind]])) for kind in self.kinds}
        tails = {kind: list(dict.fromkeys(columns[kind][scanned[kind]:])) for kind in self.kinds}
        # a special row's value that is also a plain row of the new copy is listed once
        maybe = {kind: [v in plain for v in tail] for kind, tail in tails.items()}
        plain.difference_update(rows)  # now: the previous plain rows no longer listed
        marks: dict[str, int] = {}
        added: dict[str, frozenset[str]] = {}
        removed: dict[str, frozenset[str]] = {}
        for kind in KINDS:
            values = columns[kind]
            if kind not in self.kinds:  # only special rows give these: small lists
                values[:] = dict.fromkeys(values)
                came, left = set(values), set(was.values(kind))
            else:
                new = set(fresh[kind])
                tail = [v for v, was_plain in zip(tails[kind], maybe[kind], strict=True)
                        if v not in new and not (was_plain and v not in plain)]
                head = was.values(kind)[:self.heads[kind]]
                values[:] = [v for v in head if v not in plain] if plain else head
                values.extend(fresh[kind])
                marks[kind] = len(values)
                values.extend(tail)
                quad = kind == "v4"  # a canonical name never ends with a digit (agent.bulk)
                left = {v for v in plain if ("0" <= v[-1] <= "9") == quad}
                left.update(was.values(kind)[self.heads[kind]:])  # what special rows gave
                came = new.union(tail)
            added[kind], removed[kind] = frozenset(came - left), frozenset(left - came)
        return Change(was.ident, added, removed), marks


def by_difference(rows: list[str], was: Digest, names: str) -> Shift | None:
    """The rows to scan, those that were not plain rows of the previous copy (`was`, its
    result); None when they are too many (MAX_SHARE) or that result does not know its rows."""
    heads = was.plain
    if was.special is None or heads is None or set(heads) != {"v4", names}:
        return None
    plain = set(was.values("v4")[:heads["v4"]])
    plain.update(was.values(names)[:heads[names]])
    scan = [i for i, row in enumerate(rows) if row not in plain]
    if len(scan) - len(was.special) > MAX_SHARE * max(len(rows), 1):
        return None
    return Shift(scan, plain, ("v4", names), was, heads)
