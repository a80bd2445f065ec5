"""The watcher's compact big sets answer like the sets they stand for (agent/daemon/compact.py)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agent.daemon.compact import BlobSet

VALUES = st.sets(st.integers(0, 400).map(lambda n: f"198.51.{n // 256}.{n % 256}"), max_size=60)


@given(VALUES, VALUES, VALUES, st.lists(st.integers(0, 400), max_size=20))
def test_membership_len_and_iteration_equal_the_set(base: set[str], plus: set[str],
                                                     minus: set[str], probes: list[int]) -> None:
    removed = frozenset(minus & base)  # as a record's difference: removed from the base ...
    added = frozenset(plus - base)  # ... and added outside it
    want = (base - removed) | added
    blob = BlobSet("\n".join(sorted(base)), added, removed)
    assert len(blob) == len(want) and set(blob) == want and blob.frozen() == want
    for probe in [*(f"198.51.{n // 256}.{n % 256}" for n in probes), *base, *plus]:
        assert (probe in blob) == (probe in want), probe


def test_a_part_of_a_line_is_not_a_member_and_samples_are_members() -> None:
    values = {f"198.51.100.{i}" for i in range(1, 200)}
    blob = BlobSet("\n".join(sorted(values)), frozenset({"203.0.113.7"}),
                   frozenset({"198.51.100.1"}))
    for part in ("198.51.100", "98.51.100.10", "198.51.100.1", "", "a\nb", "198.51.100.10\n"):
        assert part not in blob, part
    assert "198.51.100.10" in blob and "203.0.113.7" in blob
    random.seed(3)
    picked = blob.sample(5)
    assert len(set(picked)) == 5 and all(p in blob for p in picked)
    assert BlobSet("").sample(5) == [] and len(BlobSet("")) == 0
