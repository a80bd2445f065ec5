"""Spamhaus DROP / EDROP / DROPv6, as text (`1.10.16.0/20 ; SBL256894`) and as JSON lines.

The text lists are plain lists whose trailing `; SBL...` is a comment, so they reuse the plain
parser; a DROP list only ever holds prefixes, so a name in one is rejected, not enforced. The JSON
lists end with a `{"type":"metadata",...}` line, which describes the list and is not an indicator.
"""

from __future__ import annotations

import json

from agent.errors import FormatError
from agent.formats._common import IPS, add, clip, finish, split_lines
from agent.formats.plain import parse_plain
from agent.indicators import DOMAIN, Indicator, ParseResult, Reject


def parse_drop(text: str) -> ParseResult:
    """DROP/EDROP/DROPv6 text: one prefix per line, `;` comments."""
    parsed = parse_plain(text)
    indicators: list[Indicator] = []
    rejects = list(parsed.rejects)
    for ind in parsed.indicators:
        if ind.type == DOMAIN:
            reason = f"a DROP list holds only addresses and prefixes, not names: {ind.value}"
            rejects.append(Reject(ind.ref, reason, ind.value))
        else:
            indicators.append(ind)
    if len(rejects) > len(parsed.rejects):
        rejects.sort(key=lambda r: int(r.ref))
    return finish(indicators, rejects)


def parse_drop_json(text: str) -> ParseResult:
    """One JSON object per line with a "cidr" member; a payload with no JSON line is FormatError."""
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    objects = 0
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        ref = str(number)
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            rejects.append(Reject(ref, "not a JSON object", clip(line)))
            continue
        if not isinstance(record, dict):
            rejects.append(Reject(ref, "not a JSON object", clip(line)))
            continue
        objects += 1
        if record.get("type") == "metadata":
            continue
        add(record.get("cidr"), ref, indicators, rejects, kinds=IPS, label="cidr")
    if not objects:
        raise FormatError(
            "no JSON object found in the Spamhaus JSON feed", reason="format",
            hint="check that the feed URL returns drop_v4.json / drop_v6.json, or set the format",
        )
    return finish(indicators, rejects, early)
