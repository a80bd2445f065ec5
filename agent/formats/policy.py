"""What a feed's payloads amount to: every payload parsed, and the rule that refuses the update.

A few malformed lines are normal in real feeds and cost only those lines; a payload that is
mostly malformed is declared in the wrong format or damaged, and enforcing the rest of it would
be enforcing noise. So past the feed's `max_reject_ratio` the whole update is refused and the
last good copy stays enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from agent.errors import FormatError
from agent.formats import parse
from agent.indicators import DOMAIN, PASSTHRU, Indicator, Reject


class FeedRules(Protocol):
    """The settings of a feed that decide how its payloads are read (a `FeedConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def subdomains(self) -> bool: ...
    @property
    def max_reject_ratio(self) -> float: ...
    @property
    def max_indicators(self) -> int: ...


class Payloads(Protocol):
    """Verified payloads as (file name, format, bytes): a `FeedData`, fresh or cached."""

    @property
    def payloads(self) -> Sequence[tuple[str, str, bytes]]: ...


class ParsedFeed(NamedTuple):
    indicators: list[Indicator]
    rejects: list[Reject]  # refs are "file:line" across the payloads
    total: int  # entries read: accepted plus rejected
    index_lines: tuple[str, ...]  # provenance for `why` ("value\t*\tfile:line\n"), if asked


def parse_payloads(feed: FeedRules, data: Payloads, *, with_index: bool) -> ParsedFeed:
    """Parse every payload; refuse the whole update if too many lines are malformed."""
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    index: list[str] = []
    for path, fmt, body in data.payloads:
        parsed = parse(body, fmt or "auto")
        inds = parsed.indicators
        if feed.subdomains:  # a block covers its subdomains; an exception stays as written
            inds = tuple(i._replace(subdomains=True)
                         if i.type == DOMAIN and not i.subdomains and i.action != PASSTHRU
                         else i for i in inds)
        indicators.extend(inds)
        if len(indicators) > feed.max_indicators:
            raise too_many(feed, len(indicators), path)
        rejects.extend(r._replace(ref=f"{path}:{r.ref}") for r in parsed.rejects)
        if with_index:
            index.extend(f"{i.value}\t{i.flag}\t{path}:{i.ref}\n" for i in inds)
    total = len(indicators) + len(rejects)
    check_reject_ratio(feed, rejects, total)
    return ParsedFeed(indicators, rejects, total, tuple(index))


def check_reject_ratio(feed: FeedRules, rejects: Sequence[Reject], total: int) -> None:
    """FormatError when more than the feed's max_reject_ratio of its entries are malformed."""
    if total and len(rejects) / total > feed.max_reject_ratio:
        first = rejects[0]
        raise FormatError(
            f"{len(rejects)} of {total} entries are malformed ({len(rejects) / total:.0%}, more "
            f"than max_reject_ratio {feed.max_reject_ratio:.0%}); first: {first.ref}: "
            f"{first.reason}",
            where=f"feed {feed.name}",
            hint="the payload is probably in another format than declared, or damaged; the last "
            "good copy stays enforced. Check `blocklist-agent parse` on the file",
        )


def too_many(feed: FeedRules, count: int, path: str) -> FormatError:
    """The per-feed cap: a feed (or a mistake) listing millions of entries must not take the
    gateway's memory; what a whole sync may hold is capped apart from this."""
    return FormatError(
        f"{count:,} entries by {path}, more than this feed's max_indicators "
        f"({feed.max_indicators:,})", where=f"feed {feed.name}", reason="too-many-indicators",
        hint="if the feed really is that large and this gateway has the memory (about 1 GB per "
        "million entries between the agent and nft), raise max_indicators for this feed; "
        "otherwise tell the publisher; the last good copy stays enforced",
    )
