"""RPZ zone files (response policy zones for BIND, Unbound, Knot...) read back as indicators.

Each record's owner is a trigger and its data the action. NXDOMAIN (`CNAME .`), NODATA
(`CNAME *.`), `rpz-drop.` and local-data redirects (A, AAAA, a CNAME to a walled garden) all block
the trigger; `rpz-passthru.` (and its old form, a CNAME to the trigger itself) is an allow and
`rpz-tcp-only.` is no block, so both are skipped. QNAME triggers give names, `rpz-ip` triggers
give addresses; the nameserver and client triggers (`rpz-nsdname`, `rpz-nsip`, `rpz-client-ip`)
mean something else entirely and are skipped, never read as addresses to block.
"""

from __future__ import annotations

import re

from agent.formats._common import DOMAINS, IPS, add, clip, finish, split_lines
from agent.indicators import Indicator, InvalidValue, ParseResult, Reject

_CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY"})
_BLOCKING_TYPES = frozenset({"CNAME", "A", "AAAA"})
_NOT_BLOCKS = frozenset({"rpz-passthru.", "rpz-passthru", "rpz-tcp-only.", "rpz-tcp-only"})
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_rpz(text: str) -> ParseResult:
    """Zone file text; ref is the line where the record starts."""
    lines, early = split_lines(text)
    zone = _Zone()
    for number, line in enumerate(lines, 1):
        if line:
            zone.feed(line, str(number))
    zone.close()
    return finish(zone.indicators, zone.rejects, early)


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
        if '"' in line:  # a ";" or "(" inside a quoted TXT string is not syntax
            line = _QUOTED.sub('""', line)
        if ";" in line:
            line = line.partition(";")[0]
        if self.depth:
            self._group(line)
        elif "(" in line:
            self.pending, self.pending_ref, self.depth = [], ref, 0
            self._group(line)
        elif line.strip():
            self._line(line, ref)

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
        tokens = line.split()
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
        while at < len(tokens):  # TTL and class come first, in either order
            word = tokens[at].upper()
            at += 1
            if not (word[0].isdigit() or word in _CLASSES):
                rtype = word
                break
        if not rtype.isalnum():
            self._reject(ref, "cannot read record: no record type", line)
            return
        if rtype == "SOA" and not self.origin and owner.endswith(".") and owner != ".":
            self.origin = owner[:-1].lower()  # no $ORIGIN: the SOA owner names the zone
        if rtype in _BLOCKING_TYPES:
            name = self._relative(owner, ref)
            if name:
                self._record(name, rtype, tokens[at] if at < len(tokens) else "", ref)

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

    def _record(self, name: str, rtype: str, target: str, ref: str) -> None:
        if rtype == "CNAME":
            if not target:
                self._reject(ref, "CNAME without a target", name)
                return
            if target != "." and target != "*.":
                target = target.lower()
                if target in _NOT_BLOCKS or target == name + ".":
                    return
        head, _, last = name.rpartition(".")
        if last == "rpz-ip":
            try:
                prefix = rpz_ip_prefix(head)
            except InvalidValue as exc:
                self._reject(ref, str(exc), name)
                return
            count = len(self.rejects)
            add(prefix, ref, self.indicators, self.rejects, kinds=IPS, label="rpz-ip trigger")
            if len(self.rejects) > count:  # quote the trigger as written, not its decoding
                self.rejects[-1] = self.rejects[-1]._replace(text=name)
        elif not last.startswith("rpz-"):
            add(name, ref, self.indicators, self.rejects, kinds=DOMAINS, label="RPZ name")


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
    if "zz" in parts:
        at, fill = parts.index("zz"), 9 - len(parts)
        if fill < 1 or "zz" in parts[at + 1:]:
            raise bad
        parts[at: at + 1] = ["0"] * fill
    if len(parts) != 8:
        raise bad
    return f"{':'.join(parts)}/{length}"
