"""The kernel watcher's copy of a big address set, compact: what the daemon keeps for months.

The watcher must answer "does the agent want this element?" for any event `nft monitor`
reports, at any time, so it keeps the blocklist's big sets between syncs. As a frozenset of str
a million addresses cost about 100 MiB, and building one leaves the allocator's arenas
fragmented long after it is freed (measured: the idle daemon at 140-220 MiB instead of 60).
So the set is kept as the applied record keeps it: the base's text of the set (one str, one
line per value: 12 bytes an address) and the small difference since. A lookup is a substring
search (a few ms in 10 MB), which is nothing at the rate foreign changes happen; a burst of
events is compared against a set built for it and dropped after (`frozen`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class BlobSet:
    """The values of `text` (one per line) minus `removed` plus `added`: `in`, `len`, `sample`."""

    __slots__ = ("_added", "_count", "_removed", "_text")

    def __init__(self, text: str, added: frozenset[str] = frozenset(),
                 removed: frozenset[str] = frozenset(), count: int | None = None) -> None:
        self._text = f"\n{text}\n" if text else "\n"
        self._added, self._removed = added, removed
        base = text.count("\n") + 1 if text else 0
        self._count = count if count is not None else base - len(removed) + len(added)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str) or not value or "\n" in value:
            return False
        if value in self._added:
            return True
        return value not in self._removed and f"\n{value}\n" in self._text

    def __iter__(self) -> Iterator[str]:
        for value in self._text.strip("\n").split("\n") if self._text != "\n" else ():
            if value not in self._removed:
                yield value
        yield from self._added

    def frozen(self) -> frozenset[str]:
        """The values as a set, for comparing many events at once (then dropped)."""
        return frozenset(self)

    def sample(self, count: int) -> list[str]:
        """Up to `count` distinct values picked at random (the watcher's probes)."""
        picked: set[str] = set()
        text, tries = self._text, 0
        while len(picked) < min(count, len(self)) and tries < 20 * count:
            tries += 1
            if self._added and random.random() < len(self._added) / max(1, len(self)):
                picked.add(random.choice(sorted(self._added)))
                continue
            at = text.rfind("\n", 0, random.randrange(1, len(text)))
            value = text[at + 1:text.find("\n", at + 1)]
            if value and value not in self._removed:
                picked.add(value)
        return sorted(picked)
