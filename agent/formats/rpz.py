"""RPZ zone files (response policy zones for BIND, Unbound, Knot...) read back as indicators.

Each record's owner is a trigger and its data the action, with RPZ's meaning kept: `name` is the
name alone, `*.name` only the names below it (so a zone listing both blocks both); `CNAME .` and
local data (A, AAAA, TXT, a CNAME to a walled garden: any record but the zone's own SOA, NS and
DNSSEC ones) block with the operator's `dns.action`; `CNAME *.` (NODATA) and `CNAME rpz-drop.`
keep their action; `CNAME rpz-passthru.` (and its old form, a CNAME to the trigger itself) is an
exception to this feed's own blocks, kept as such (action PASSTHRU: the merge scopes it to the
feed and renders it `rpz-passthru.`, it never blocks); `rpz-tcp-only.` is no policy to enforce.
QNAME triggers give names, `rpz-ip` triggers give addresses; the nameserver and client triggers
(`rpz-nsdname`, `rpz-nsip`, `rpz-client-ip`) mean something else entirely and are skipped,
never read as addresses to block.

Linear time whatever the input: escapes are neutralized by plain replaces and quoted strings
skipped by regexes that cannot backtrack (possessive quantifiers, matched from the start of the
line), never by a search that restarts at every quote; a record's type is looked for in the
three tokens after its owner only.
"""

from __future__ import annotations

import re

from agent.formats._common import DOMAINS, IPS, add, clip, control_reject, finish, split_lines
from agent.indicators import (
    BLOCK,
    DROP,
    NODATA,
    PASSTHRU,
    Indicator,
    InvalidValue,
    ParseResult,
    Reject,
)

_CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY"})
# The zone's own records: no trigger (the apex SOA/NS, a signed zone's DNSSEC records).
_NOT_POLICY = frozenset({"SOA", "NS", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "DS",
                         "CDS", "CDNSKEY", "ZONEMD", "DNAME"})
_TARGETS = {"rpz-drop": DROP, "rpz-passthru": PASSTHRU, "rpz-tcp-only": None}
# Once escapes are neutralized (`code_of`): the code part of a line is plain text and closed
# strings up to a `;` comment or an unclosed `"`. Matched at the line's start, greedy, with
# nothing after it that could fail, so nothing is ever retried. (No possessive quantifier on the
# group: Python 3.11's mis-matches a possessive repeat of an alternation.)
_CODE = re.compile(r'(?:[^";]+|"[^"]*")*')
_STRING = re.compile(r'"[^"]*+"')


def parse_rpz(text: str) -> ParseResult:
    """Zone file text; ref is the line where the record starts."""
    lines, early = split_lines(text)
    zone = _Zone()
    for number, line in enumerate(lines, 1):
        if line:
            zone.feed(line, str(number))
    zone.close()
    return finish(zone.indicators, zone.rejects, early)


def code_of(line: str) -> tuple[str, bool]:
    """(the line without its comment, each quoted string reduced to `""`; False if a string is
    left open). An escape (`\\;`, `\\"`, `\\(`) keeps its character but loses its meaning as
    syntax: escapes are neutralized first (an escaped backslash, then the escaped syntax
    characters, each by one C-speed replace), after which a string is just `"` to `"`."""
    if '"' not in line and "\\" not in line:
        return line.partition(";")[0], True
    if "\\" in line:
        line = line.replace("\\\\", "\\_")
        for char in '"();':
            line = line.replace("\\" + char, "\\_")
    code = _CODE.match(line)
    end = code.end() if code else 0
    if end < len(line) and line[end] == '"':
        return line[:end], False
    return _STRING.sub('""', line[:end]), True


def cname_action(target: str, owner: str) -> str | None:
    """What a CNAME at `owner` (relative, as written) does: one of the indicator ACTIONS, or None
    for no policy (`rpz-tcp-only.`). Special targets are read with or without the final dot."""
    if target == ".":
        return BLOCK
    if target == "*.":
        return NODATA
    lowered = target.lower()
    bare = lowered[:-1] if lowered.endswith(".") else lowered
    if bare in _TARGETS:
        return _TARGETS[bare]
    if lowered == owner.lower() + ".":
        return PASSTHRU  # the legacy form: a CNAME to the trigger's own name
    return BLOCK  # a CNAME to a walled garden: local data, a block


class _Zone:
    """Reading state: $ORIGIN, the owner carried to lines that start with a blank, and a
    record spanning lines inside ( )."""

    def __init__(self) -> None:
        self.origin = ""  # lowercase, no trailing dot; "" while unknown
        self.owner = ""
        self.pending: list[str] = []
        self.pending_ref = ""
        self.depth = 0
        self.indicators: list[Indicator] = []
        self.rejects: list[Reject] = []

    def feed(self, line: str, ref: str) -> None:
        code, closed = code_of(line)
        if not closed:
            self._reject(ref, "quoted string not closed on its line", line)
            return
        if not code.isprintable() and not code.replace("\t", " ").rstrip("\r").isprintable():
            self.rejects.append(control_reject(ref, code, "zone line"))
            return
        if self.depth:
            self._group(code)
        elif "(" in code:
            self.pending, self.pending_ref, self.depth = [], ref, 0
            self._group(code)
        elif code.strip():
            self._line(code, ref)

    def close(self) -> None:
        if self.depth:
            self.rejects.append(Reject(self.pending_ref, "unclosed ( in record"))

    def _group(self, line: str) -> None:
        self.depth += line.count("(") - line.count(")")
        self.pending.append(line.replace("(", " ").replace(")", " "))
        if self.depth <= 0:
            self.depth = 0
            self._line(" ".join(self.pending), self.pending_ref)

    def _reject(self, ref: str, reason: str, text: str = "") -> None:
        self.rejects.append(Reject(ref, reason, clip(text.strip())))

    def _line(self, line: str, ref: str) -> None:
        tokens = line.split()  # only blanks are left: the line is printable, tabs aside
        if not tokens:
            return
        first = line[0]
        if first == "$":
            self._directive(tokens, ref, line)
            return
        if first == " " or first == "\t":
            owner, at = self.owner, 0
            if not owner:
                self._reject(ref, "record without an owner name", line)
                return
        else:
            owner, at = tokens[0], 1
            self.owner = owner
        rtype = ""
        for word in tokens[at: at + 3]:  # a TTL and a class may come first, in either order
            word = word.upper()
            at += 1
            if not (word[0].isdigit() or word in _CLASSES):
                rtype = word
                break
        if not rtype.isalnum():
            self._reject(ref, "cannot read record: no record type", line)
            return
        if rtype == "SOA" and not self.origin and owner.endswith(".") and owner != ".":
            self.origin = owner[:-1].lower()  # no $ORIGIN: the SOA owner names the zone
        if rtype in _NOT_POLICY:
            return
        name = self._relative(owner, ref)
        if not name:
            return
        action: str | None = BLOCK
        if rtype == "CNAME":
            if at >= len(tokens):
                self._reject(ref, "CNAME without a target", name)
                return
            action = cname_action(tokens[at], name)
        if action is not None:
            self._trigger(name, action, ref)

    def _directive(self, tokens: list[str], ref: str, line: str) -> None:
        word = tokens[0].upper()
        if word == "$ORIGIN" and len(tokens) == 2:
            origin = tokens[1].lower()
            if origin.endswith("."):
                self.origin = origin[:-1]
            else:
                self.origin = f"{origin}.{self.origin}" if self.origin else origin
        elif word != "$TTL":
            self._reject(ref, f"unsupported zone file directive {tokens[0]}", line)

    def _relative(self, owner: str, ref: str) -> str:
        """The trigger an owner name stands for, relative to the zone; "" for the apex."""
        name = owner.lower()
        if name == "@" or not name.endswith("."):
            return "" if name == "@" else name
        name = name[:-1]
        if not self.origin or name == self.origin:
            return "" if name == self.origin else name
        if name.endswith("." + self.origin):
            return name[: -len(self.origin) - 1]
        self._reject(ref, f"owner name is outside the zone {self.origin}", owner)
        return ""

    def _trigger(self, name: str, action: str, ref: str) -> None:
        below = name.startswith("*.")
        base = name[2:] if below else name
        if base == "*" or name == "*":
            self._reject(ref, "a wildcard trigger for every name of the zone", name)
            return
        if base.startswith(".") or ".." in base:
            self._reject(ref, "owner name with an empty label", name)
            return
        head, _, last = base.rpartition(".")
        count = len(self.indicators)
        if last == "rpz-ip":
            if below:
                self._reject(ref, "a wildcard on an rpz-ip trigger", name)
                return
            try:
                prefix = rpz_ip_prefix(head)
            except InvalidValue as exc:
                self._reject(ref, str(exc), name)
                return
            rejected = len(self.rejects)
            add(prefix, ref, self.indicators, self.rejects, kinds=IPS, label="rpz-ip trigger")
            if len(self.rejects) > rejected:  # quote the trigger as written, not its decoding
                self.rejects[-1] = self.rejects[-1]._replace(text=name)
        elif not last.startswith("rpz-"):
            add(base, ref, self.indicators, self.rejects, kinds=DOMAINS, label="RPZ name")
            if below and len(self.indicators) > count:
                self.indicators[-1] = self.indicators[-1]._replace(subdomains=True, below=True)
        if action and len(self.indicators) > count:
            self.indicators[-1] = self.indicators[-1]._replace(action=action)


def rpz_ip_prefix(labels: str) -> str:
    """"24.0.2.0.192" -> "192.0.2.0/24"; "48.zz.db8.2001" -> "2001:db8:0:0:0:0:0:0/48".

    The prefix length comes first, then the address with its labels reversed; in IPv6 "zz"
    stands for the "::" run of zero groups. The result is checked by the normalizer.
    """
    length, _, rest = labels.partition(".")
    parts = rest.split(".")[::-1]
    bad = InvalidValue(f"not a valid rpz-ip trigger: {clip(labels)}.rpz-ip")
    if not length.isdigit() or not rest:
        raise bad
    if len(parts) == 4 and all(part.isdigit() for part in parts):
        return f"{'.'.join(parts)}/{length}"
    if len(parts) == 3 and all(part.isdigit() for part in [length, *parts]):
        raise InvalidValue(f"rpz-ip trigger without its prefix length: {clip(labels)}.rpz-ip "
                           "(RPZ writes 32.4.3.2.1.rpz-ip for 1.2.3.4; resolvers ignore this "
                           "record)")
    if "zz" in parts:
        at, fill = parts.index("zz"), 9 - len(parts)
        if fill < 1 or "zz" in parts[at + 1:]:
            raise bad
        parts[at: at + 1] = ["0"] * fill
    if len(parts) != 8:
        raise bad
    return f"{':'.join(parts)}/{length}"
