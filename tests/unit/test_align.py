"""agent.align: a monotone pairing of equal rows, or None when the copies share no order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import align

row = st.sampled_from([f"10.0.0.{i}" for i in range(12)] + ["", "a.example", "b.example"])


def check(old: list[str], new: list[str], found: tuple[list[align.Run], list[int], list[int]]
          ) -> None:
    runs, removed, inserted = found
    paired_old: list[int] = []
    paired_new: list[int] = []
    for i, j, length in runs:
        assert length > 0 and old[i:i + length] == new[j:j + length]
        paired_old.extend(range(i, i + length))
        paired_new.extend(range(j, j + length))
    # monotone: the runs follow each other in both copies
    assert paired_old == sorted(paired_old) and paired_new == sorted(paired_new)
    # every row is paired or removed (old), paired or inserted (new), once
    assert sorted(paired_old + removed) == list(range(len(old)))
    assert sorted(paired_new + inserted) == list(range(len(new)))


@settings(max_examples=400, deadline=None)
@given(st.lists(row, max_size=60), st.lists(st.tuples(st.integers(0, 60), st.booleans(), row),
                                            max_size=12))
def test_any_pair_of_lists_is_paired_validly(old: list[str],
                                            edits: list[tuple[int, bool, str]]) -> None:
    new = list(old)
    for at, insert, value in edits:
        at = min(at, len(new))
        if insert or at == len(new):
            new.insert(at, value)
        else:
            del new[at]
    found = align.align(old, new, float("inf"))
    if found is not None:
        check(old, new, found)


def changed(seed: int, size: int, count: int) -> tuple[list[str], list[str], set[str], set[str]]:
    """A sorted list of `size` addresses, and a copy with `count` of them out, `count` in."""
    rnd = random.Random(seed)
    old = sorted({f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.1"
                  for _ in range(size)})
    gone = set(rnd.sample(old, count))
    came = {f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.2"
            for _ in range(count)}
    return old, sorted({*old} - gone | came), gone, came


def test_a_sorted_list_changed_by_one_percent_is_paired_at_its_changes() -> None:
    old, new, gone, came = changed(3, 20_000, 200)
    found = align.align(old, new, 1000)
    assert found is not None
    check(old, new, found)
    _, removed, inserted = found
    assert {old[i] for i in removed} == gone  # the smallest answer, here
    assert {new[j] for j in inserted} == came


def test_rows_appended_and_removed_here_and_there() -> None:
    old = [f"n{i}.example" for i in range(5000)]
    new = [r for k, r in enumerate(old) if k % 97] + [f"u{i}.example" for i in range(60)]
    found = align.align(old, new, 500)
    assert found is not None
    check(old, new, found)
    assert len(found[1]) == len(old) - len(new) + 60 and len(found[2]) == 60


def test_copies_that_share_no_order_are_left_to_the_sets() -> None:
    old = [f"10.{i // 256}.{i % 256}.1" for i in range(20_000)]
    new = list(old)
    random.Random(5).shuffle(new)
    assert align.align(old, new, float("inf")) is None


def test_a_change_past_the_budget_gives_up() -> None:
    old = [f"a{i}.example" for i in range(1000)]
    new = [f"b{i}.example" if i % 10 == 0 else r for i, r in enumerate(old)]
    assert align.align(old, new, 199) is None  # 100 out, 100 in
    found = align.align(old, new, 200)
    assert found is not None
    check(old, new, found)


def test_carried_maps_old_rows_still_listed_to_their_new_place() -> None:
    runs = [(0, 0, 3), (5, 3, 4), (9, 10, 2)]
    assert align.carried(runs, [0, 2, 3, 4, 5, 8, 9, 10, 11]) == [0, 2, 3, 6, 10, 11]
    assert align.carried([], [1, 2]) == []


def test_dense_changes_next_to_each_other_are_still_paired() -> None:
    """10 % out and 10 % in of a sorted list: many changes touch (two rows out where one came):
    each is resolved near where it happened, not taken for copies that share no order."""
    old, new, gone, _ = changed(8, 40_000, 4000)
    found = align.align(old, new, 0.25 * len(new))
    assert found is not None
    check(old, new, found)
    assert {old[i] for i in found[1]} - {new[j] for j in found[2]} == gone
