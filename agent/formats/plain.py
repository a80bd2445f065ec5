"""Plain lists (one value per line) and hosts files (`0.0.0.0 evil.example other.example`).

Plain lists are the bulk path: national feeds of a million lines arrive this way, so the loop does
only `str` operations before the normalizer (no regex splitting, no per-line generator).
"""

from __future__ import annotations

from itertools import count

from agent.formats._common import (
    DOMAINS,
    add,
    clip,
    control_reject,
    finish,
    is_address,
    split_lines,
    strip_comment,
)
from agent.indicators import UNKNOWN, Indicator, ParseResult, Reject, try_normalize

_VISIBLE = bytes(range(0x21, 0x7F))  # "!" to "~": what a bare line may hold
# Entries every hosts file carries for the machine itself (Debian's, Red Hat's, macOS's and the
# big merged lists' headers); they are not indicators. Only these: "ip6-tracker.example" is a name.
HOSTS_SKIP = frozenset({
    "localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0",
    "localhost4", "localhost4.localdomain4", "localhost6", "localhost6.localdomain6",
    "ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes",
    "ip6-allrouters", "ip6-allhosts",
})
# Work per line is bounded: hosts files hold one to a few names a line (Windows reads 9).
MAX_HOSTS_NAMES = 256
# The sinks a hosts line starts with; a plain list line starting with one is a hosts line.
_SINKS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0:0:0:0:0:0:0:0", "0:0:0:0:0:0:0:1"})


def parse_plain(text: str) -> ParseResult:
    """One IP, CIDR, name, `*.name` or URL per line; `#`/`;` comments, whole-line or trailing.

    A value may be followed by more columns separated by blanks (stamparm/ipsum's
    `77.90.185.20<TAB>10`, a count; a date, a description): the value is the first column, as
    the name is the second one of a hosts line. Only spaces and tabs separate columns; any other
    invisible character in the value rejects the line.
    """
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
        line = ""
        if " " in value or "\t" in value:
            line, value = value, first_column(value)
            if value in _SINKS:
                reason = "a hosts file line (a sink address, then names): set format: hosts"
                rejects.append(Reject(str(number), reason, clip(line)))
                continue
            if "." not in value and ":" not in value:  # a word: prose, not a value and columns
                rejects.append(Reject(str(number), f"{UNKNOWN}: {clip(line)}", clip(line)))
                continue
        if value.isprintable():
            refused = len(rejects)
            try_normalize(value, str(number), indicators, rejects)
            if line and len(rejects) > refused and rejects[-1].reason.startswith(UNKNOWN):
                # a syntax of its own ('local-zone: "x" always_nxdomain'): quote the line whole
                rejects[-1] = Reject(str(number), f"{UNKNOWN}: {clip(line)}", clip(line))
        else:
            rejects.append(control_reject(str(number), value))
    return finish(indicators, rejects, early)


def first_column(text: str) -> str:
    """The first column of a stripped line whose columns are separated by spaces or tabs.

    Not `str.split()`, which also splits at no-break spaces and other Unicode separators: a value
    holding one is to be rejected, not cut into a shorter value that means something else.
    """
    space, tab = text.find(" "), text.find("\t")
    return text[: space if tab < 0 or 0 <= space < tab else tab]


def blank_fields(text: str) -> list[str]:
    """The fields of a line separated by spaces and tabs only (see `first_column`)."""
    if text.isascii() and text.replace("\t", " ").isprintable():
        return text.split()  # nothing but spaces and tabs for it to split at: the C fast path
    return [field for field in text.replace("\t", " ").split(" ") if field]


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
    for the machine itself (localhost, broadcasthost, ip6-localhost...) are skipped, not rejected.
    Fields are separated by spaces and tabs only (`blank_fields`).
    """
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    checked = ""  # the last address found good: hosts files repeat one sink on every line
    for number, line in enumerate(lines, 1):
        fields = blank_fields(line)
        if not fields or fields[0][0] == "#":
            continue
        if "#" in line:
            fields = blank_fields(strip_comment(" ".join(fields), "#"))
        if len(fields) < 2:
            rejects.append(Reject(str(number), "hosts line needs an address and a name",
                                  line.strip()))
            continue
        if len(fields) > MAX_HOSTS_NAMES + 1:
            reason = (f"hosts line with {len(fields) - 1} names, more than {MAX_HOSTS_NAMES}: "
                      "not a hosts file line")
            rejects.append(Reject(str(number), reason, clip(line.strip())))
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
    return name in HOSTS_SKIP
