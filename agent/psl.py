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
    def __init__(self, rules: Iterable[str]) -> None:
        plain: set[str] = set()
        wild: set[str] = set()
        exceptions: set[str] = set()
        for rule in rules:
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
        self._fingerprint = ""

    def fingerprint(self) -> str:
        """Equal for equal rules: cached feed results checked against another list are not
        reused (agent.feedcache)."""
        if not self._fingerprint:
            text = "\n".join([*sorted(self._plain), "*", *sorted(self._wild), "!",
                              *sorted(self._exceptions)])
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()
        return self._fingerprint

    def __len__(self) -> int:
        return len(self._plain) + len(self._wild)

    def is_public_suffix(self, name: str) -> bool:
        """True when `name` alone is a suffix under which the public registers names."""
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
