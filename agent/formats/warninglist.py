"""MISP warninglists (github.com/MISP/misp-warninglists): lists of known-good values, for
`role: allow` feeds that keep shared infrastructure (CDN ranges, cloud storage hosts) from being
blocked because a threat list named one of their addresses.

`{"name", "type", "list"}`: a `cidr` list holds addresses and networks, a `hostname` list names
that cover their subdomains (MISP matches a hostname entry against the name and every name
below it). The other types (`string`, `substring`, `regex`) match text, not hosts: each of their
entries is a counted reject, so such a list is refused by `max_reject_ratio` rather than read as
something it is not.
"""

from __future__ import annotations

from agent.errors import FormatError
from agent.formats._common import (
    DOMAINS,
    IPS,
    add,
    clip,
    describe,
    finish,
    load_json,
    printable,
)
from agent.indicators import Indicator, ParseResult, Reject

_USED = {"cidr": IPS, "hostname": DOMAINS}


def parse_warninglist(text: str) -> ParseResult:
    document = load_json(text, "MISP warninglist")
    entries = document.get("list") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(entries, list):
        raise FormatError(
            "not a MISP warninglist: no \"list\"", reason="format",
            hint='expected {"name": ..., "type": "cidr", "list": [...]} (a list.json of '
            "misp-warninglists); check the feed URL and format")
    kind = document.get("type")
    title = document.get("name")
    name = printable(clip(title if isinstance(title, str) and title else "warninglist", 60))
    kinds = _USED.get(kind) if isinstance(kind, str) else None
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    for index, entry in enumerate(entries):
        ref = f"{name} list[{index}]"
        if kinds is None:
            shown = clip(kind, 20) if isinstance(kind, str) else describe(kind)
            rejects.append(Reject(ref, f"warninglist type {shown!r} matches text, "
                                  "not hosts: only cidr and hostname lists are used",
                                  clip(entry) if isinstance(entry, str) else describe(entry)))
            continue
        if kinds == DOMAINS and isinstance(entry, str):
            entry = entry.strip().removeprefix("*.").removeprefix(".")
        add(entry, ref, indicators, rejects, kinds=kinds, label=f"{kind} entry",
            subdomains=kinds == DOMAINS)
    return finish(indicators, rejects)
