"""Indicator values and their normalization: the one place that decides what a valid value is.

Every format parser funnels its raw tokens through `normalize()` (or the narrower helpers), so that
"1.2.3.4", "EVIL.Example.", "https://evil.example/x" and "évil.example" all become one canonical
text. The renderers re-check the same character classes before writing an nft script or a zone, so
a value that slipped past here still cannot inject a line.

Speed matters: a national feed holds a million values. The bulk path uses `socket.inet_pton` and a
compiled regex (cheap, see docs/design.md §3); `idna` and int arithmetic are only reached for the
rare non-ASCII names and for prefixes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from agent.netrange import prefix_span, to_text
from agent.util.hostport import HostPortError, split_host_port

IPV4 = "ipv4"
IPV6 = "ipv6"
DOMAIN = "domain"
TYPES = (IPV4, IPV6, DOMAIN)
# What a feed says to do with a match (`Indicator.action`). "" blocks with the operator's
# `dns.action`; the others are what an RPZ feed wrote: `rpz-drop.`, `CNAME *.` and
# `rpz-passthru.` (an exception to that feed's own blocks, never a block itself).
BLOCK = ""
DROP = "drop"
NODATA = "nodata"
PASSTHRU = "passthru"
ACTIONS = (BLOCK, DROP, NODATA, PASSTHRU)


class Indicator(NamedTuple):
    """One normalized value from one source.

    `value` is canonical text: "192.0.2.1", "198.51.100.0/24", "2001:db8::1", "2001:db8::/32" or
    "evil.example" (lowercase, ASCII/punycode, no trailing dot). A prefix keeps its type (ipv4 or
    ipv6) and is recognised by its "/". `subdomains` only means something for domains: the entry
    also covers every name below it. `below` narrows that to the names below only, not the name
    itself (an RPZ `*.name` trigger without a `name` one); it is only ever set with `subdomains`,
    so that code reading `subdomains` alone errs towards covering more, never less (the guards'
    protected-name test). `expires` is a Unix time or None. `ref` is where it came from inside
    its source (a line number, or an object id for JSON formats), kept for `why`. `action` is one
    of ACTIONS.
    """

    type: str
    value: str
    subdomains: bool = False
    expires: int | None = None
    ref: str = ""
    below: bool = False
    action: str = BLOCK

    @property
    def shown(self) -> str:
        """The value as an operator writes it: "*.name" when it covers the names below."""
        return f"*.{self.value}" if self.subdomains else self.value

    @property
    def flag(self) -> str:
        """The coverage column of the provenance index (`why`): "" the value, "*" it and below,
        "." below only; "!" first for an exception."""
        cover = "." if self.below else "*" if self.subdomains else ""
        return "!" + cover if self.action == PASSTHRU else cover

    @property
    def is_prefix(self) -> bool:
        return "/" in self.value

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.type, "value": self.value}
        if self.type == DOMAIN:
            out["subdomains"] = self.subdomains
            if self.below:
                out["below_only"] = True
        if self.action:
            out["action"] = self.action
        if self.expires is not None:
            out["expires"] = self.expires
        if self.ref:
            out["ref"] = self.ref
        return out


class Reject(NamedTuple):
    """A line or object that was not accepted, with the reason written for an operator."""

    ref: str
    reason: str
    text: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = (
            {"line": int(self.ref)} if self.ref.isdigit() else {"ref": self.ref})
        out["reason"] = self.reason
        if self.text:
            out["text"] = self.text
        return out


class ParseResult(NamedTuple):
    indicators: tuple[Indicator, ...]
    rejects: tuple[Reject, ...]


class InvalidValue(ValueError):
    """Raised by the normalizers; the message is the reject reason shown to the operator."""


# A hostname label: letters, digits, underscore (seen in real DNS data) and inner hyphens.
_LABEL = r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)"
HOSTNAME_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
# What a rendered name or address may ever contain; used again by the renderers on whole blobs.
SAFE_NAME_CHARS = re.compile(r"[a-z0-9_.\-*]*")
SAFE_ADDR_CHARS = re.compile(r"[0-9a-f.:/]*")
_ALL_DIGITS = re.compile(r"[0-9]+")
# Characters of no address, prefix, name or URL (letters and digits of any script, "_", ".",
# "-", "*", and the ":", "/", "[", "]", "%" of addresses are): a value holding one is in a syntax
# the format does not have (adblock "||x^", dnsmasq "address=/x/", a sentence).
_FOREIGN = re.compile(r"[^\w.*:/\[\]%-]")
_HEX_GROUP = re.compile(r"\[?[0-9A-Fa-f]{0,4}")
# IDNA maps some characters to nothing, so a Unicode name may shrink; none of 1024 is a name.
_MAX_UNICODE_NAME = 1024
MAX_DNS_NAME = 255  # octets on the wire, root label included (RFC 1035 section 2.3.4)
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_inet_pton = socket.inet_pton
_FAMILY = {IPV4: (socket.AF_INET, 32), IPV6: (socket.AF_INET6, 128)}


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize_ip(text: str) -> tuple[str, str]:
    """Return (type, canonical) for an address or prefix, or raise InvalidValue.

    A prefix with host bits set ("192.0.2.7/24") is reduced to its network, as routers do; a
    host prefix (/32, /128) becomes a plain address so that it lands in the hash set.
    """
    addr, slash, length = text.partition("/")
    if ":" in addr:
        kind = IPV6
        if addr.startswith("[") and addr.endswith("]"):
            addr = addr[1:-1]
        if "%" in addr:
            raise InvalidValue(f"IPv6 address with a zone index: {_clip(text)}")
    else:
        kind = IPV4
    family, bits = _FAMILY[kind]
    try:
        packed = socket.inet_pton(family, addr)
    except (OSError, ValueError):
        raise InvalidValue(f"not a valid {kind} address: {_clip(text)}") from None
    if not slash:
        return kind, socket.inet_ntop(family, packed)
    if len(length) > 3 or not _ALL_DIGITS.fullmatch(length) or int(length) > bits:
        raise InvalidValue(f"bad prefix length in {_clip(text)}")
    plen = int(length)
    if plen == bits:
        return kind, socket.inet_ntop(family, packed)
    network, _ = prefix_span(int.from_bytes(packed, "big"), plen, family)
    return kind, f"{to_text(network, family)}/{plen}"


def normalize_domain(text: str) -> str:
    """Return the canonical form of a hostname, or raise InvalidValue.

    Lowercase, trailing dot removed, IDN converted to punycode (IDNA 2008 with UTS 46 mapping).
    Labels 1..63 octets, the whole at most 253, and the last label must not be all digits (that is
    an address written wrong, not a name). A single label ("fr") is a valid name here: refusing
    TLDs and public suffixes is the guards' job, so that it is reported as the danger it is.
    """
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidValue("empty name")
    if len(name) > 253 and (name.isascii() or len(name) > _MAX_UNICODE_NAME):
        # before IDNA: its mapping costs per character, and no such text is a name
        raise InvalidValue(f"name longer than 253 characters: {_clip(text)}")
    if not name.isascii():
        name = _to_punycode(name, text)
    if len(name) > 253:
        raise InvalidValue(f"name longer than 253 characters: {_clip(text)}")
    if not HOSTNAME_RE.fullmatch(name):
        if any(len(label) > 63 for label in name.split(".")):
            raise InvalidValue(f"label longer than 63 characters in {_clip(text)}")
        raise InvalidValue(f"not a valid domain name: {_clip(text)!r}")
    if _ALL_DIGITS.fullmatch(name.rpartition(".")[2]):
        raise InvalidValue(f"not a valid address or domain name: {_clip(text)}")
    return name


def _to_punycode(name: str, original: str) -> str:
    import idna  # Debian's python3-idna, a dependency of python3-requests

    try:
        return str(idna.encode(name, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidValue(f"not a valid internationalized name: {_clip(original)}") from None


def host_from_url(text: str) -> str:
    """The host part of a URL ("hxxp://evil[.]example:8080/x" is de-fanged first)."""
    url = text.strip()
    url = url.replace("[.]", ".").replace("(.)", ".").replace("[:]", ":")
    if url[:4].lower() == "hxxp":
        url = "http" + url[4:]
    if "://" not in url:
        url = "http://" + url
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise InvalidValue(f"no host in URL: {_clip(text)}")
    return host


def strip_port(text: str) -> str:
    """"1.2.3.4:443" -> "1.2.3.4"; "[2001:db8::1]:443" -> "2001:db8::1"; others unchanged.

    Brackets and colons are read by the one host:port rule; the port itself is only dropped, so
    any digits do.
    """
    try:
        host, port = split_host_port(text)
    except HostPortError:
        return text
    if text.startswith("[") or (port is not None and port.isdigit()):
        return host
    return text


def normalize(text: str, *, ref: str = "", expires: int | None = None) -> Indicator:
    """Turn one raw token (address, prefix, name, `*.name`, URL, host:port) into an Indicator."""
    token = text.strip()
    if not token:
        raise InvalidValue("empty value")
    # fast paths: a bare address is most of every big feed (inet_pton only accepts canonical
    # dotted quads, so the token is already canonical text)
    if token[0].isdigit() and "/" not in token:
        try:
            _inet_pton(_AF_INET, token)
        except OSError:
            pass
        else:
            return Indicator(IPV4, token, False, expires, ref)
    if ":" in token and "/" not in token and "[" not in token and "." not in token:
        try:
            packed = _inet_pton(_AF_INET6, token)
        except OSError:
            pass
        else:
            return Indicator(IPV6, socket.inet_ntop(_AF_INET6, packed), False, expires, ref)
    if "://" in token or token[:4].lower() == "hxxp":
        token = host_from_url(token)
    subdomains = False
    if token.startswith("*."):
        subdomains = True
        token = token[2:]
    elif token.startswith("."):
        subdomains = True  # ".example.org" is the dnsmasq/squid way of saying "and below"
        token = token[1:]
    first = token[:1]
    if first.isdigit() or ":" in token or first == "[":
        candidate = strip_port(token) if ":" in token else token  # no colon, no port
        try:
            kind, value = normalize_ip(candidate)
        except InvalidValue:
            if ":" in candidate or "/" in candidate:
                raise
        else:
            if subdomains:
                raise InvalidValue(f"wildcard on an address: {_clip(text)}")
            return Indicator(kind, value, False, expires, ref)
    if "/" in token:
        raise InvalidValue(f"not a valid address, prefix or name: {_clip(text)}")
    name = normalize_domain(token)
    return Indicator(DOMAIN, name, subdomains, expires, ref)


def try_normalize(
    text: str, ref: str, indicators: list[Indicator], rejects: list[Reject],
    *, expires: int | None = None, subdomains: bool = False,
) -> None:
    """Append the normalized value or a reject: the loop body shared by every format parser."""
    try:
        ind = normalize(text, ref=ref, expires=expires)
    except InvalidValue as exc:
        token = text.strip()
        rejects.append(Reject(ref, _format_reason(token, exc), _clip(token)))
        return
    if subdomains and ind.type == DOMAIN and not ind.subdomains:
        ind = ind._replace(subdomains=True)
    indicators.append(ind)


def result(indicators: Iterable[Indicator], rejects: Iterable[Reject]) -> ParseResult:
    return ParseResult(tuple(indicators), tuple(rejects))


# The start of the reason for a value in a syntax the format does not have; a parser reading a
# typed column (`formats._common.add`) replaces it by what the column holds.
UNKNOWN = "not a value this format knows"


def _format_reason(token: str, exc: InvalidValue) -> str:
    """The reject reason for a feed value: the normalizer's, unless the value is not even an
    attempt at an address, prefix, name or URL ("md5:...", "||x^", "local-zone: ..."), which the
    normalizer would report as a bad IPv6 address or a bad name: then it says so."""
    if "://" in token or token[:4].lower() == "hxxp":
        return str(exc)
    colon = token.find(":")
    hex_group = _HEX_GROUP.match(token)
    if _FOREIGN.search(token) or (colon >= 0 and hex_group and hex_group.end() != colon):
        return f"{UNKNOWN}: {_clip(token)}"
    return str(exc)


def owner_octets(name: str, zone: str, *, wildcard: bool = False) -> int:
    """Wire length of the RPZ owner `[*.]name.zone.`: each label's text plus its length octet,
    plus the root's zero octet. It must not exceed MAX_DNS_NAME for the zone to hold it."""
    zone = zone.strip(".")
    octets = len(name) + 2 + (len(zone) + 1 if zone else 0)
    return octets + 2 if wildcard else octets


CANONICAL_ADDRESS, CANONICAL_NAME = 1, 2
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"  # what HOSTNAME_RE's labels hold


def canonical_kind(row: str) -> int:
    """CANONICAL_ADDRESS or CANONICAL_NAME when `row` is already what `normalize` would make of
    it (a dotted quad; a lowercase hostname that is not read as a URL), else 0.

    The bulk parser (agent.bulk) keeps such rows as they are, and a feed's provenance index
    leaves them out (agent.state.feeds rebuilds their entries from the payload), so this is
    the one definition both use: HOSTNAME_RE's test in C string operations.
    """
    if not row:
        return 0
    last = row[-1]
    if "0" <= last <= "9":
        try:
            _inet_pton(_AF_INET, row)
        except OSError:
            return 0
        return CANONICAL_ADDRESS
    if (not row.strip(_HOST_CHARS) and ".." not in row and ".-" not in row and "-." not in row
            and row[0] not in ".-" and last not in ".-"
            and (len(row) <= 63 or (len(row) <= 253 and HOSTNAME_RE.fullmatch(row) is not None))
            and not row.startswith("hxxp")):
        return CANONICAL_NAME
    return 0
