"""Two copies of a list walked side by side: which rows stayed, which left, which came.

A published list keeps its order from one copy to the next: sorted, or appended to at the end,
with a few rows removed here and there. Comparing the copies in that order costs one slice
comparison (in C) per run of equal rows, where a set costs a hash and a lookup per row: a
tenth of the time on a million rows changed by 1 % (bench/e2e.py, docs/design.md §15).

The matching is monotone and pairs equal rows only, so it is always a valid answer: every
row of the new copy is either paired with an equal row of the old one or inserted, every
old row paired or removed. It need not be the smallest: near a change the walk looks ahead
in growing windows for the next common row, and gives up (None) when the copies do not
share an order, so that the caller compares them by sets instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RUN = 32  # the first slice compared once two rows match; doubled while they go on matching
WINDOWS = (16, 128, 1024, 8192)  # how far ahead the next common row is looked for
STUCK = 8  # rows replaced one for one in a row, past which the wider windows are searched
LOST = 64  # rows found in no window, past which the copies are taken to share no order

Run = tuple[int, int, int]  # old index, new index, length: rows equal two by two


def align(old: Sequence[str], new: Sequence[str], budget: float
          ) -> tuple[list[Run], list[int], list[int]] | None:
    """(runs, removed old indexes, inserted new indexes), or None past `budget` rows removed
    and inserted or when the copies share no order."""
    runs: list[Run] = []
    removed: list[int] = []
    inserted: list[int] = []
    i = j = lost = stuck = 0
    n, m = len(old), len(new)
    while i < n and j < m:
        if old[i] == new[j]:
            start_i, start_j = i, j
            step = RUN
            while i + step <= n and j + step <= m and old[i:i + step] == new[j:j + step]:
                i += step
                j += step
                step *= 2
            while step > 1:  # the rest of the run, halving
                step //= 2
                if i + step <= n and j + step <= m and old[i:i + step] == new[j:j + step]:
                    i += step
                    j += step
            runs.append((start_i, start_j, i - start_i))
            stuck = 0
            continue
        replaced = i + 1 < n and j + 1 < m and old[i + 1] == new[j + 1]  # one row for another
        ahead_old = ahead_new = -1
        # near a change the next common row is close: the wide windows only once stuck (a
        # block of rows added or removed), so that dense changes cost a short search each
        for window in () if replaced else WINDOWS if stuck >= STUCK else WINDOWS[:1]:
            ahead_old = _find(old, new[j], i + 1, i + window)
            ahead_new = _find(new, old[i], j + 1, j + window)
            if ahead_old >= 0 or ahead_new >= 0:
                break
        if ahead_old >= 0 and (ahead_new < 0 or ahead_old - i <= ahead_new - j):
            removed.extend(range(i, ahead_old))  # old rows before the next common one left
            i = ahead_old
        elif ahead_new >= 0:
            inserted.extend(range(j, ahead_new))  # new rows before it came
            j = ahead_new
        else:  # replaced, or neither row is near: the copies may share no order
            if not replaced:
                if stuck >= STUCK:
                    lost += 1
                    if lost > LOST:
                        return None
                stuck += 1
            removed.append(i)
            inserted.append(j)
            i += 1
            j += 1
        if len(removed) + len(inserted) > budget:
            return None
    removed.extend(range(i, n))
    inserted.extend(range(j, m))
    if len(removed) + len(inserted) > budget:
        return None
    return runs, removed, inserted


def _find(rows: Sequence[str], row: str, start: int, stop: int) -> int:
    try:
        return rows.index(row, start, stop)
    except ValueError:
        return -1


def carried(runs: Iterable[Run], indexes: Iterable[int]) -> list[int]:
    """The new indexes of the old `indexes` (ascending) that are in a run: rows still listed."""
    out: list[int] = []
    it = iter(runs)
    run = next(it, None)
    for index in indexes:
        while run is not None and run[0] + run[2] <= index:
            run = next(it, None)
        if run is None:
            break
        if run[0] <= index:
            out.append(run[1] + index - run[0])
    return out
