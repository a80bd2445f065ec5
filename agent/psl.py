"""Public suffixes from Debian's `publicsuffix` package, so that a feed can never block `fr`.

The list is read from the file the package installs (kept current by Debian's updates), never
from a copy in this repository. Only the question the guards ask is answered: "is this name a
public suffix on its own?" (`fr`, `co.uk`, `gouv.fr`, any single label), following the list's
rules: plain rules, wildcards (`*.ck`) and exceptions (`!www.ck`).

Reading the file is the edge's job (`default()`, called where a policy is built); the guards only
receive the loaded list, as a `PublicSuffixes`, so that they stay pure and tests can hand in
their own rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from agent.errors import ConfigError

DEFAULT_PATH = Path("/usr/share/publicsuffix/public_suffix_list.dat")


class PublicSuffixes(Protocol):
    """The one question the guards ask of the list."""

    def is_public_suffix(self, name: str) -> bool: ...


class PublicSuffixList:
    """The rules, parsed on first use: a sync that checks no name (nothing changed) only
    fingerprints them."""

    def __init__(self, rules: Iterable[str]) -> None:
        self._source: list[str] | None = list(rules)
        self._fingerprint = hashlib.sha256("\n".join(self._source).encode()).hexdigest()
        self._plain: frozenset[str] = frozenset()
        self._wild: frozenset[str] = frozenset()
        self._exceptions: frozenset[str] = frozenset()

    def _parse(self) -> None:
        assert self._source is not None
        plain: set[str] = set()
        wild: set[str] = set()
        exceptions: set[str] = set()
        for rule in self._source:
            rule = rule.strip().lower()
            if not rule or rule.startswith("//"):
                continue
            rule = rule.split()[0]
            if not rule.isascii():
                rule = rule.encode("idna").decode("ascii")
            if rule.startswith("!"):
                exceptions.add(rule[1:])
            elif rule.startswith("*."):
                wild.add(rule[2:])
            else:
                plain.add(rule)
        self._plain = frozenset(plain)
        self._wild = frozenset(wild)
        self._exceptions = frozenset(exceptions)
        self._source = None

    def fingerprint(self) -> str:
        """Equal for the same list (its text): cached feed results checked against another
        list are not reused (agent.feedcache)."""
        return self._fingerprint

    def __len__(self) -> int:
        if self._source is not None:
            self._parse()
        return len(self._plain) + len(self._wild)

    def suffix_sets(self) -> tuple[frozenset[str], frozenset[str]]:
        """(the plain rules, the names under which every label is a suffix): a name is a
        public suffix if it is in the first, or its parent in the second, unless an exception
        says otherwise (what a fast superset test needs, agent.guards.name_suspect_test)."""
        if self._source is not None:
            self._parse()
        return self._plain, self._wild

    def is_public_suffix(self, name: str) -> bool:
        """True when `name` alone is a suffix under which the public registers names."""
        if self._source is not None:
            self._parse()
        if "." not in name:
            return True  # the list's implicit "*" rule: every TLD is a public suffix
        if name in self._exceptions:
            return False
        if name in self._plain:
            return True
        return name.partition(".")[2] in self._wild

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> PublicSuffixList:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the public suffix list: {exc.strerror}",
                where=str(path),
                hint="install Debian's publicsuffix package (apt-get install publicsuffix)",
            ) from None
        return cls(text.splitlines())


@lru_cache(maxsize=1)
def default() -> PublicSuffixList:
    """Debian's list, read once per process; ConfigError when the package is missing."""
    return PublicSuffixList.load(DEFAULT_PATH)
