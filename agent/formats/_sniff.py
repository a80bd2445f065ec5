"""Guess a payload's format from its first few KB, for feeds configured with `format: auto`.

The tests go from the most to the least specific: a JSON shape, a CSV header naming the columns of
one publisher, zone file syntax, then the shape of the data lines (`prefix ; SBL...` for DROP,
`address name` for hosts). Anything else is read as a plain list, whose parser rejects (and so
reports) the lines it cannot read rather than guessing further.
"""

from __future__ import annotations

import json
import re

from agent.formats._common import is_address, strip_comment
from agent.formats._csv import header_fields
from agent.formats.abusech import FEODO_HEADER, THREATFOX_HEADER, URLHAUS_HEADER
from agent.formats.misp import csv_header as misp_header
from agent.formats.plain import is_own_name

HEAD_BYTES = 8192
_SINKS = frozenset({"0.0.0.0", "::", "::1", "0:0:0:0:0:0:0:0", "0:0:0:0:0:0:0:1"})
_SCAN_LINES = 200
_ZONE_TYPES = frozenset({"CNAME", "SOA", "NS", "A", "AAAA"})
_STIX = re.compile(r'"type"\s*:\s*"bundle"|"bundle--|"spec_version"\s*:\s*"2|"pattern_type"\s*:')
_MISP = re.compile(r'"(?:Event|Attribute|response)"\s*:')
_WARNINGLIST = (re.compile(r'"list"\s*:\s*\['),
                re.compile(r'"type"\s*:\s*"(?:cidr|hostname|string|substring|regex)"'))
_CSV_HEADERS = (
    ("feodo-csv", FEODO_HEADER),
    ("threatfox-csv", THREATFOX_HEADER),
    ("urlhaus-csv", URLHAUS_HEADER),
    ("misp-csv", misp_header),
)


def sniff(data: bytes) -> str:
    """The format name of a payload, judged on its first HEAD_BYTES; "plain" when unsure."""
    head = data[:HEAD_BYTES].decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    lines = head.replace("\r\n", "\n").split("\n")
    if len(data) > HEAD_BYTES and len(lines) > 1:
        lines.pop()  # cut mid-line
    lines = lines[:_SCAN_LINES]
    if head[:1] in ("{", "["):
        return _sniff_json(head, lines[0])
    return _sniff_csv(lines) or _sniff_lines(lines)


def _sniff_json(head: str, first_line: str) -> str:
    try:
        record = json.loads(first_line)
    except (ValueError, RecursionError):  # 8 KB of "[" nests past Python's limit
        record = None
    if isinstance(record, dict) and ("cidr" in record or record.get("type") == "metadata"):
        return "spamhaus-json"
    if all(pattern.search(head) for pattern in _WARNINGLIST):
        return "misp-warninglist"
    if _STIX.search(head):
        return "stix2"
    if _MISP.search(head):
        return "misp-json"
    return "plain"


def _sniff_csv(lines: list[str]) -> str:
    for line in lines:
        if "," not in line:
            continue
        fields = set(header_fields(line))
        for name, accepts in _CSV_HEADERS:
            if accepts(fields):
                return name
    return ""


def _sniff_lines(lines: list[str]) -> str:
    """A vote of the data lines, so that one odd (or hostile) line cannot flip a whole feed."""
    votes = {"spamhaus-drop": 0, "hosts": 0, "rpz": 0, "plain": 0}
    depth = 0  # inside a zone record's ( ), e.g. the SOA's timers
    for line in lines:
        text = line.strip()
        if depth:
            depth = max(0, depth + text.count("(") - text.count(")"))
            continue
        if not text or text[0] in "#;":
            continue
        value, semicolon, comment = text.partition(";")
        fields = strip_comment(text).split()
        if semicolon and comment.strip().upper().startswith("SBL") and "/" in value:
            votes["spamhaus-drop"] += 1
        elif len(fields) >= 2 and _is_hosts_line(fields):
            votes["hosts"] += 1
        elif fields[0].upper() in ("$ORIGIN", "$TTL") or _is_zone_record(value):
            votes["rpz"] += 1
            depth = max(0, value.count("(") - value.count(")"))
        else:
            votes["plain"] += 1
    best = max(votes, key=lambda name: votes[name])
    return best if votes[best] * 2 > sum(votes.values()) else "plain"


def _is_hosts_line(fields: list[str]) -> bool:
    """A sink address then names, or the machine's own entries ("::1 localhost ip6-loopback").

    Any address would do for the hosts parser, but "192.0.2.1 botnet" in a plain list is a bad
    line to report, not a hosts entry that blocks a name "botnet".
    """
    address = fields[0]
    if address in _SINKS or address.startswith("127."):
        return is_address(address)
    return is_address(address) and all(is_own_name(name) for name in fields[1:])


def _is_zone_record(text: str) -> bool:
    """`owner [ttl] [class] CNAME|SOA|NS|A|AAAA ...` (also `IN NS x` under the SOA's owner)."""
    words = text.upper().replace("(", " ").split()
    return not _ZONE_TYPES.isdisjoint(words[1:4])
