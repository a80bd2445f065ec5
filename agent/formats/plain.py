"""Plain lists (one value per line) and hosts files (`0.0.0.0 evil.example other.example`).

Plain lists are the bulk path: national feeds of a million lines arrive this way, so the loop does
only `str` operations before the normalizer (no regex splitting, no per-line generator).
"""

from __future__ import annotations

from itertools import count

from agent.formats._common import (
    DOMAINS,
    add,
    control_reject,
    finish,
    is_address,
    split_lines,
    strip_comment,
)
from agent.indicators import Indicator, ParseResult, Reject, try_normalize

_VISIBLE = bytes(range(0x21, 0x7F))  # "!" to "~": what a bare line may hold
# Entries every hosts file carries for the machine itself; they are not indicators.
HOSTS_SKIP = frozenset({"localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0"})


def parse_plain(text: str) -> ParseResult:
    """One IP, CIDR, name, `*.name` or URL per line; `#`/`;` comments, whole-line or trailing."""
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    if not early and _is_bare(text):
        # Fast path, same result: no line can hold a comment, a blank or a control character.
        for ref, value in zip(map(str, count(1)), lines, strict=False):
            if value:
                try_normalize(value, ref, indicators, rejects)
        return finish(indicators, rejects)
    for number, value in enumerate(lines, 1):
        if not value:
            continue
        if value[0] <= " " or value[-1] <= " ":  # surrounding blanks, a lone CR at the end
            value = value.strip()
            if not value:
                continue
        first = value[0]
        if first == "#" or first == ";":
            continue
        if "#" in value or ";" in value:
            value = strip_comment(value)
        if value.isprintable():
            try_normalize(value, str(number), indicators, rejects)
        else:
            rejects.append(control_reject(str(number), value))
    return finish(indicators, rejects, early)


def _is_bare(text: str) -> bool:
    """Only visible ASCII other than `#` and `;`, and line ends: the common feed, checked in C
    over the whole text (about 20 ms for a million lines) instead of per line."""
    if not text.isascii() or "#" in text or ";" in text:
        return False
    rest = text.encode("ascii").translate(None, _VISIBLE)
    return len(rest) == rest.count(b"\n") + rest.count(b"\r\n")  # no space, tab, lone CR...


is_bare = _is_bare  # the bulk path (agent.bulk) reads a list the same way


def parse_hosts(text: str) -> ParseResult:
    """An address then one or more names per line; only the names are indicators.

    The address is usually a sink (0.0.0.0, 127.0.0.1) and is not blocked itself. The entries
    for the machine itself (localhost, broadcasthost, ip6-*) are skipped, not rejected.
    """
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    checked = ""  # the last address found good: hosts files repeat one sink on every line
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0][0] == "#":
            continue
        if "#" in line:
            fields = strip_comment(" ".join(fields), "#").split()
        if len(fields) < 2:
            rejects.append(Reject(str(number), "hosts line needs an address and a name",
                                  line.strip()))
            continue
        names = [name for name in fields[1:] if not is_own_name(name)]
        if not names:
            continue
        if fields[0] != checked:
            if not is_address(fields[0]):
                reason = f"hosts line does not start with an address: {fields[0]}"
                rejects.append(Reject(str(number), reason, line.strip()))
                continue
            checked = fields[0]
        ref = str(number)
        for name in names:
            add(name, ref, indicators, rejects, kinds=DOMAINS, label="host name")
    return finish(indicators, rejects, early)


def is_own_name(name: str) -> bool:
    """localhost, broadcasthost, ip6-allnodes...: the machine's own entries in a hosts file."""
    if not name.islower():
        name = name.lower()
    return name in HOSTS_SKIP or name.startswith("ip6-")
