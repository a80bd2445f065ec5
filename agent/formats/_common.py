"""What every format parser shares: decoding, line splitting, comments, typed values, JSON loading.

The rules for a bad byte, a trailing comment or a value of the wrong kind are decided here once, so
that each parser only says what is specific to its format, and an operator reads the same reject
reason whichever feed the line came from.
"""

from __future__ import annotations

import codecs
import json
import re
import socket
import sys
from collections.abc import Sequence

from agent.errors import FormatError
from agent.indicators import (
    DOMAIN,
    IPV4,
    IPV6,
    TYPES,
    UNKNOWN,
    Indicator,
    ParseResult,
    Reject,
    result,
    try_normalize,
)

Kinds = tuple[str, ...]
IPS: Kinds = (IPV4, IPV6)
DOMAINS: Kinds = (DOMAIN,)
ANY: Kinds = TYPES
_NOUNS = {
    IPS: "an IP address or prefix",
    (IPV4,): "an IPv4 address or prefix",
    (IPV6,): "an IPv6 address or prefix",
    DOMAINS: "a domain name",
}

# Bytes that are not UTF-8 survive decoding as lone surrogates (errors="surrogateescape"), so that
# the one line or value holding them can be rejected while the rest of the feed is still read.
_BAD_BYTE = re.compile("[\udc80-\udcff]")


def clip(text: str, limit: int = 80) -> str:
    """Shorten a value for a reject message, with undecodable bytes made printable."""
    if not text.isascii():
        text = _BAD_BYTE.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode(data: bytes) -> str:
    """UTF-8 text of a payload, BOM removed; invalid bytes are kept as lone surrogates."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise FormatError(
            "the feed is UTF-16 text", reason="format",
            hint="feeds must be UTF-8: ask the publisher, or convert with iconv -f UTF-16 -t UTF-8",
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def has_bad_bytes(text: str) -> bool:
    """Does the text hold bytes that were not UTF-8 (decode keeps them as lone surrogates)?"""
    return not text.isascii() and _BAD_BYTE.search(text) is not None


def split_lines(text: str) -> tuple[list[str], list[Reject]]:
    """Lines without their CR/LF, and one reject for each line holding bytes that are not UTF-8.

    Only "\\n" ends a line (not the other separators of `str.splitlines`), so that line numbers
    match what `sed -n` shows. A rejected line is blanked, which every parser skips.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    rejects: list[Reject] = []
    if has_bad_bytes(text):
        for index, line in enumerate(lines):
            bad = _BAD_BYTE.search(line)
            if bad:
                byte = ord(bad.group()) - 0xDC00
                reason = f"line is not valid UTF-8 (byte 0x{byte:02x} at column {bad.start() + 1})"
                rejects.append(Reject(str(index + 1), reason, clip(line.strip())))
                lines[index] = ""
    return lines, rejects


_COMMENT = {"#;": re.compile(r"[ \t][#;]"), "#": re.compile(r"[ \t]#")}


def strip_comment(text: str, marks: str = "#;") -> str:
    """Remove a trailing comment: a mark preceded by a space or tab ("1.2.3.4 ; SBL1").

    A mark glued to the value ("evil.com;drop table", "http://x/#frag") is part of the value, so
    the value is rejected or read whole instead of being silently shortened into something else.
    One regex search: a line of a million glued marks costs one pass, not one step per mark.
    """
    found = _COMMENT[marks].search(text)
    return text[:found.start()].rstrip() if found else text


def is_address(text: str) -> bool:
    """An IPv4/IPv6 address, a zone index allowed (hosts files: "fe80::1%lo0 localhost")."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        socket.inet_pton(family, text.partition("%")[0])
    except (OSError, ValueError):
        return False
    return True


def control_reject(ref: str, value: str, label: str = "value") -> Reject:
    """The reject for a value holding a tab, CR, NUL, escape or other invisible character.

    Checked before normalizing because URL parsing silently drops tabs and newlines
    ("http://a.exa\tmple/" would become a.example), and such a value is never a real indicator.
    """
    return Reject(ref, f"{label} contains a control or invisible character",
                  printable(clip(value.strip())))


def add(
    value: object, ref: str, indicators: list[Indicator], rejects: list[Reject], *,
    kinds: Kinds = ANY, label: str = "value", url: bool = False,
    expires: int | None = None, subdomains: bool = False,
) -> None:
    """Normalize one value whose field says what it must be (an address, a name, a URL).

    Values from JSON may be of any type; a value that normalizes to the wrong kind (a name in an
    address column) is rejected rather than enforced as something the publisher did not mean.
    """
    if value is None:
        rejects.append(Reject(ref, f"missing {label}"))
        return
    if not isinstance(value, str):
        rejects.append(Reject(ref, f"{label} is not text: {describe(value)}"))
        return
    if not value.isascii() and _BAD_BYTE.search(value):
        rejects.append(Reject(ref, f"{label} is not valid UTF-8", clip(value)))
        return
    if not value.isprintable() and not value.strip().isprintable():
        rejects.append(control_reject(ref, value, label))
        return
    if url and "://" not in value and value[:4].lower() != "hxxp":
        value = "http://" + value.strip()
    count, refused = len(indicators), len(rejects)
    try_normalize(value, ref, indicators, rejects, expires=expires, subdomains=subdomains)
    if len(indicators) > count and indicators[-1].type not in kinds:
        indicators.pop()
        rejects.append(Reject(ref, f"{_expected(label, kinds)}: {clip(value)}",
                              clip(value.strip())))
    elif len(rejects) > refused and kinds != ANY and rejects[-1].reason.startswith(UNKNOWN):
        # a typed column: say what the column holds, not that the format does not know it
        last = rejects[-1]
        rejects[-1] = last._replace(reason=_expected(label, kinds) + last.reason[len(UNKNOWN):])


def _expected(label: str, kinds: Kinds) -> str:
    return f"{label} is not {_NOUNS.get(kinds, 'a supported value')}"


def describe(value: object) -> str:
    """A JSON value named for a reject, never by `repr` of a container: a list nested a few
    hundred levels deep would make `repr` recurse past Python's limit, and a long one costs its
    whole length to print for 80 characters shown."""
    if isinstance(value, dict):
        return f"a JSON object of {len(value)} members"
    if isinstance(value, list):
        return f"a JSON list of {len(value)} items"
    if isinstance(value, str):
        return repr(clip(value))
    return clip(repr(value))


def printable(text: str) -> str:
    """Text with control and other non-printable characters escaped ("\\x1b", "\\n").

    Rejects quote hostile input back to an operator's terminal and logs; an escape sequence or a
    newline in them must not reach either raw.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def ref_of(ident: object, fallback: str) -> str:
    """An object's id as a ref, if it is short printable text; the position in the feed if not."""
    if isinstance(ident, str) and ident and len(ident) <= 100 and ident.isprintable():
        return ident
    return fallback


def finish(
    indicators: list[Indicator], rejects: list[Reject], early: Sequence[Reject] = (),
) -> ParseResult:
    """The ParseResult: rejects made printable, those found before parsing (bad bytes) merged
    in line order."""
    rejects = [
        r if r.reason.isprintable() and r.text.isprintable()
        else Reject(r.ref, printable(r.reason), printable(r.text))
        for r in [*early, *rejects]
    ]
    if early:
        rejects.sort(key=lambda r: int(r.ref) if r.ref.isdigit() else 0)
    return result(indicators, rejects)


def load_json(text: str, what: str) -> object:
    """The decoded JSON document, or FormatError: a JSON feed is read whole or not at all."""
    try:
        return json.loads(text)
    except RecursionError:
        # The C reader nests one call per level and stops at Python's recursion limit (about
        # 1000 levels: a real feed has fewer than 20), after reading only that many brackets.
        # Nothing here walks a decoded document recursively, so that limit is the bound.
        raise FormatError(
            f"{what} payload nests arrays or objects too deeply to be read (more than about "
            f"{sys.getrecursionlimit()} levels)", reason="format",
            hint="the document is not a feed; check the feed URL",
        ) from None
    except ValueError as exc:
        raise FormatError(
            f"{what} payload is not valid JSON: {exc}", reason="format",
            hint="check that the feed URL returns the JSON document (not an HTML error page) "
            "and that the configured format is right",
        ) from None
