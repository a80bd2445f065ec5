"""STIX 2.1 bundles: the network observables of `indicator` objects whose pattern is STIX.

A pattern is read with a small tokenizer, never evaluated: every `object-path = 'string'`
comparison on a network object (domain-name, ipv4-addr, ipv6-addr, url, network-traffic dst_ref)
gives an indicator, whatever the AND/OR around it, because a blocklist blocks each observable.
Negated, inequality, LIKE/MATCHES/IN/ISSUBSET comparisons and other object types are skipped, as
they do not name one value to block; a pattern that cannot be tokenized is a reject.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import NamedTuple

from agent.errors import FormatError
from agent.formats._common import (
    ANY,
    DOMAINS,
    Kinds,
    add,
    clip,
    describe,
    finish,
    load_json,
    ref_of,
)
from agent.indicators import IPV4, IPV6, Indicator, ParseResult, Reject

# Object path -> (kinds its value must normalize to, value is a URL).
_PATHS: dict[str, tuple[Kinds, bool]] = {
    "ipv4-addr:value": ((IPV4,), False),
    "ipv6-addr:value": ((IPV6,), False),
    "domain-name:value": (DOMAINS, False),
    "url:value": (ANY, True),
    "network-traffic:dst_ref.value": (ANY, False),
}

# Matched only at the current position (a token that cannot be read ends the pattern), with a
# quoted body unrolled as "plain run, then escape + plain run" (a run is possessive: nothing in
# it is ever given back; no group is possessive, which Python 3.11 mis-matches): a token costs
# its length, and a pattern of a megabyte of quotes and backslashes is read in one pass.
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<string>(?P<prefix>[thb]?)'(?P<body>[^'\\]*+(?:\\.[^'\\]*+)*)')
      | (?P<path>[A-Za-z0-9][A-Za-z0-9_-]*+:
                 (?:[A-Za-z0-9_]++|'[^'\\]*+(?:\\.[^'\\]*+)*'|\.|\[(?:\*|\d++)\])+)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[][(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*+)
      | (?P<number>[+-]?\d++(?:\.\d++)?)""",
    re.VERBOSE,
)
_UNESCAPE = re.compile(r"\\(.)")
# Work per object is bounded: a real pattern names one to a few hundred observables (an indicator
# each, as MISP and OpenCTI export them); 128 KiB is a few thousand comparisons.
MAX_PATTERN = 128 * 1024
_OPERATOR_WORDS = frozenset({"LIKE", "MATCHES", "IN", "ISSUBSET", "ISSUPERSET"})


class PatternError(ValueError):
    """A STIX pattern that cannot be read; the message is the reject reason."""


class Token(NamedTuple):
    kind: str  # space is never yielded; one of string, path, op, punct, word, number
    text: str  # for a string: its unescaped body
    prefix: str = ""  # for a string: "" or the t/h/b of a timestamp, hex or binary literal


def tokenize(pattern: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(pattern):
        match = _TOKEN.match(pattern, position)
        if match is None:
            char = pattern[position]
            problem = "unterminated string" if char == "'" else f"unexpected {char!r}"
            raise PatternError(f"{problem} at column {position + 1}")
        kind = match.lastgroup or ""
        position = match.end()
        if kind == "string":
            body = _UNESCAPE.sub(r"\1", match.group("body"))
            tokens.append(Token(kind, body, match.group("prefix")))
        elif kind != "space":
            tokens.append(Token(kind, match.group()))
    return tokens


def equalities(pattern: str) -> list[tuple[str, str]]:
    """(object path, value) of every non-negated `path = 'string'` comparison in the pattern."""
    tokens = tokenize(pattern)
    depth = 0
    found: list[tuple[str, str]] = []
    for index, token in enumerate(tokens):
        if token.kind == "punct":
            depth += {"[": 1, "]": -1}.get(token.text, 0)
            if depth < 0 or depth > 1:
                raise PatternError(f"unbalanced brackets near {token.text!r}")
        if token.kind != "path" or (index and tokens[index - 1].text.upper() == "EXISTS"):
            continue
        if depth != 1:
            raise PatternError(f"comparison outside [ ] at {token.text}")
        following = tokens[index + 1: index + 4]
        negated = bool(following) and following[0].text.upper() == "NOT"
        if negated:
            following = following[1:]
        if len(following) < 2 or not (
            following[0].kind == "op" or following[0].text.upper() in _OPERATOR_WORDS
        ):
            raise PatternError(f"no operator and value after {token.text}")
        operator, value = following[0], following[1]
        if value.kind not in ("string", "number") and value.text not in ("(", "true", "false"):
            raise PatternError(f"no value after {token.text} {operator.text}")
        if operator.text == "=" and not negated and value.kind == "string" and not value.prefix:
            found.append((token.text, value.text))
    if depth != 0:
        raise PatternError("unbalanced brackets")
    if not any(token.kind == "punct" and token.text == "[" for token in tokens):
        raise PatternError("no [ ] observation expression")
    return found


def timestamp(value: object) -> int:
    """Unix time of a STIX timestamp ("2024-05-01T00:00:00.000Z"); a zone-less one is UTC."""
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def parse_stix2(text: str) -> ParseResult:
    """A bundle (or a TAXII envelope) of objects; only STIX-pattern indicators are read."""
    document = load_json(text, "STIX")
    objects = document.get("objects") if isinstance(document, dict) else None
    if not isinstance(objects, list):
        raise FormatError(
            "not a STIX bundle: no \"objects\" list", reason="format",
            hint='expected {"type": "bundle", "objects": [...]}; check the feed URL and format',
        )
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            rejects.append(Reject(f"objects[{index}]", "STIX object is not a JSON object"))
        elif obj.get("type") == "indicator":
            _indicator(obj, ref_of(obj.get("id"), f"objects[{index}]"), indicators, rejects)
    return finish(indicators, rejects)


def _indicator(
    obj: dict[str, object], ref: str, indicators: list[Indicator], rejects: list[Reject],
) -> None:
    if obj.get("revoked") in (True, "true") or obj.get("pattern_type", "stix") != "stix":
        return
    expires = None
    if obj.get("valid_until") is not None:
        try:
            expires = timestamp(obj["valid_until"])
        except ValueError:
            value = obj["valid_until"]
            text = clip(value) if isinstance(value, str) else describe(value)
            rejects.append(Reject(ref, f"valid_until is not a timestamp: {text}", text))
            return
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        rejects.append(Reject(ref, "indicator has no pattern"))
        return
    if len(pattern) > MAX_PATTERN:
        reason = f"STIX pattern of {len(pattern)} characters, more than {MAX_PATTERN} (128 KiB)"
        rejects.append(Reject(ref, reason, clip(pattern)))
        return
    try:
        comparisons = equalities(pattern)
    except PatternError as exc:
        rejects.append(Reject(ref, f"cannot read STIX pattern: {exc}", clip(pattern)))
        return
    for path, value in comparisons:
        spec = _PATHS.get(path.lower())
        if spec is not None:
            add(value, ref, indicators, rejects, kinds=spec[0], url=spec[1], label=path,
                expires=expires)
