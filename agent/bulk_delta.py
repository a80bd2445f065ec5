"""The bulk path by difference: a new copy of a one-payload plain list read at the cost of the
rows that changed since the previous copy, whose result (agent.digest) is in the cache.

A row's verdict depends on the row, the feed's settings and the guards' inputs only, and the
previous result was made under the same ones (its key says so: agent.feedcache). So a row that
both copies list has the verdict it had. The previous result names the rows its reading did
not take as they are (`Digest.special`: odd lines, values the guards looked at); every other
row of it is a canonical value accepted as it is, in the v4 list if it is a dotted quad, else
in the feed's names list. The new result is then:

- those lists, less the rows the new copy no longer lists;
- plus the new rows, read by the bulk path's scan (agent.bulk);
- plus what the special rows of the new copy give, read one by one at their line numbers
  exactly as a full reading would (rejects, refusals and provenance lines included).

Counts, samples and provenance equal the full reading's; only the order of the values in a
list differs, which nothing reads (tests/unit/test_bulk.py compares both readings). Past
MAX_SHARE of rows changed, the full reading is about as fast and is used instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from agent.digest import KINDS, Change, Digest

MAX_SHARE = 0.25  # of the new copy's rows added or removed, past which every row is read
Scan = Callable[[Iterable[tuple[int, str]], list[str], list[str]], tuple[list[int], list[int]]]


class Before(NamedTuple):
    """The previous copy's payload text and its validated result (`special` known)."""

    text: str
    digest: Digest


class Shift:
    """What reading by difference kept; `special`: the line indexes to read one by one."""

    def __init__(self, special: list[int], marks: dict[str, tuple[int, int]],
                 gone: dict[str, set[str]], plain: Callable[[str], bool], before: Digest
                 ) -> None:
        self.special = special
        # per canonical kind: where the new rows start and where the special values will
        self.marks = marks
        self.gone = gone  # per canonical kind: the previous values not kept as rows
        self.plain = plain  # a row of the new copy taken as it is
        self.before = before

    def finish(self, columns: dict[str, list[str]]) -> Change:
        """Make each list unique (the values the special rows gave may repeat a row) and say
        what changed from the previous result, kind by kind."""
        added: dict[str, frozenset[str]] = {}
        removed: dict[str, frozenset[str]] = {}
        for kind in KINDS:
            values = columns[kind]
            if kind not in self.marks:  # only special rows give these: small lists
                values[:] = dict.fromkeys(values)
                now, was = set(values), set(self.before.values(kind))
                added[kind], removed[kind] = frozenset(now - was), frozenset(was - now)
                continue
            start, mark = self.marks[kind]
            plain = self.plain
            tail = [v for v in dict.fromkeys(values[mark:]) if not plain(v)]
            del values[mark:]
            values.extend(tail)
            gone = self.gone[kind]
            came = set(values[start:])  # the new rows and what the special rows gave
            added[kind] = frozenset(came - gone)
            removed[kind] = frozenset(gone - came)
        return Change(self.before.ident, added, removed)


def by_difference(rows: list[str], before: Before, scan: Scan, columns: dict[str, list[str]],
                  names: str) -> Shift | None:
    """Fill `columns` ("v4" and `names`, the kinds a canonical row goes to) with the rows kept
    from the previous result and the new rows the scan takes as they are; None when the
    difference is too large (nothing is filled then)."""
    was = before.digest
    if was.special is None:
        return None
    new = set(rows)
    new.discard("")
    text = before.text.replace("\r\n", "\n") if "\r" in before.text else before.text
    old = set(text.split("\n"))
    old.discard("")
    added = new - old
    kept = len(new) - len(added)
    if len(added) + len(old) - kept > MAX_SHARE * max(len(new), 1):
        return None
    del text, old
    special_before = set(was.special)
    keep = new - added
    keep -= special_before  # rows of both copies taken as they are
    fresh = list(added)
    extra: dict[str, list[str]] = {"v4": [], names: []}
    odd, suspects = scan(enumerate(fresh), extra["v4"], extra[names])
    special = special_before & new
    special.update(fresh[i] for i in odd)
    special.update(fresh[i] for i in suspects)
    at = [i for i, row in enumerate(rows) if row in special] if special else []
    marks: dict[str, tuple[int, int]] = {}
    gone: dict[str, set[str]] = {}
    for kind in ("v4", names):
        previous = was.values(kind)
        values = columns[kind]
        values.extend([v for v in previous if v in keep])
        start = len(values)
        values.extend(extra[kind])
        marks[kind] = (start, len(values))
        gone[kind] = {v for v in previous if v not in keep}
    return Shift(at, marks, gone, lambda v: v in new and v not in special, was)
