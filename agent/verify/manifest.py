"""Feed verification rules (docs/design.md §2), as pure functions: bytes and `now` in, a Manifest
or a VerifyError out. No I/O and no clock here, so every rule is tested with fixed inputs and the
fetcher cannot forget a step: `verify_manifest` checks the signature before a single byte of JSON
is parsed, then the structure, then freshness and rollback.

Every refusal leaves the last good feed enforced; the messages say so and tell the on-call operator
what to look at.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.errors import VerifyError
from agent.util.escape import has_unsafe
from agent.util.feedpath import collision, payload_path_problem
from agent.util.timefmt import human_utc
from agent.verify.minisign import PublicKey, verify

FORMAT = "blocklist-feed/1"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.minisig"
MAX_SERIAL = 2**63 - 1

_TOP_FIELDS = {"format", "publisher", "serial", "issued", "expires", "payloads"}
# Optional: `feed` names the feed a manifest is for (`publish --feed`), so that another feed
# signed by the same key cannot be replayed at this feed's URL; older manifests have none.
_OPTIONAL_FIELDS = {"feed"}
_FEED_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PAYLOAD_FIELDS = {"path", "format", "sha256", "size"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RFC3339_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)"
)
_PAYLOAD_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# the feed's own two files, and the files the state directory keeps beside the payloads
# (agent.state.feeds: RECORD, INDEX, REJECTS): a payload named record.json would replace it
_RESERVED = {MANIFEST_NAME, SIGNATURE_NAME, "record.json", "index.tsv", "rejects.tsv"}
_KEEP = "the last good feed stays enforced"


@dataclass(frozen=True)
class Payload:
    """One file of the feed, pinned by the signed manifest."""

    path: str
    format: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. `sha256` is of the exact manifest bytes; `key_id` is the signing key
    id as minisign shows it ("" when parsed without a signature)."""

    format: str
    publisher: str
    serial: int
    issued: datetime
    expires: datetime
    payloads: tuple[Payload, ...]
    sha256: str
    key_id: str
    feed: str = ""  # the feed it was published for ("": not said)


@dataclass(frozen=True)
class LastAccepted:
    """What the state recorded for the last manifest accepted from this feed."""

    serial: int
    sha256: str


def _malformed(what: str) -> VerifyError:
    return VerifyError(
        f"malformed manifest: {what}",
        hint=f"the publisher's tooling produced an invalid manifest; {_KEEP}; report the message "
        "to the publisher",
        where=MANIFEST_NAME,
        reason="malformed-manifest",
    )


def payload_path_error(path: object) -> str | None:
    """Why `path` cannot name a payload, or None: the path rule of every file of a feed, and the
    two names the feed itself takes."""
    problem = payload_path_problem(path)
    if problem is None and path in _RESERVED:
        return "is reserved for the manifest, its signature and the agent's own records"
    return problem


def _timestamp(obj: dict[str, Any], name: str) -> datetime:
    value = obj[name]
    if not isinstance(value, str) or not _RFC3339_UTC.fullmatch(value):
        raise _malformed(
            f"field {name!r} must be an RFC 3339 UTC time like 2026-11-23T10:00:00Z, got {value!r}"
        )
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError as exc:
        raise _malformed(f"field {name!r} is not a valid date/time: {value!r} ({exc})") from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_payload(index: int, obj: object) -> Payload:
    at = f"payloads[{index}]"
    if not isinstance(obj, dict):
        raise _malformed(f"{at} must be an object, got {obj!r:.80}")
    missing = sorted({"path", "sha256", "size"} - obj.keys())
    unknown = sorted(obj.keys() - _PAYLOAD_FIELDS)
    if missing or unknown:
        raise _malformed(f"{at}: missing fields {missing}, unknown fields {unknown}")
    path, fmt, sha, size = obj["path"], obj.get("format", "auto"), obj["sha256"], obj["size"]
    problem = payload_path_error(path)
    if problem:
        raise _malformed(f"{at}.path {problem}: {path!r:.100}")
    if not isinstance(fmt, str) or not _PAYLOAD_FORMAT.fullmatch(fmt):
        raise _malformed(f"{at}.format must be a format name like 'plain', got {fmt!r:.80}")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise _malformed(f"{at}.sha256 must be 64 lowercase hex digits, got {sha!r:.80}")
    if not _is_int(size) or size < 0:
        raise _malformed(f"{at}.size must be an integer >= 0, got {size!r:.80}")
    return Payload(path, fmt, sha, size)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _malformed(f"field {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _malformed(f"{name} is not allowed in a manifest")


def parse_manifest(data: bytes, *, key_id: str = "") -> Manifest:
    """Parse and validate a manifest strictly: unknown fields, duplicates, floats, NaN, unsafe
    paths and non-UTC times are all refused, so two parsers can never read one manifest two ways.
    """
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constant,
        )
    except ValueError as exc:  # not UTF-8, not JSON, or an integer past Python's 4300 digits
        raise _malformed(f"not UTF-8 JSON: {exc}") from exc
    except RecursionError:  # the C reader stops at Python's recursion limit, about 1000 levels
        raise _malformed("arrays or objects nested too deeply to be read") from None
    if not isinstance(obj, dict):
        raise _malformed(f"the top level must be a JSON object, got {type(obj).__name__}")
    missing = sorted(_TOP_FIELDS - obj.keys())
    unknown = sorted(obj.keys() - _TOP_FIELDS - _OPTIONAL_FIELDS)
    if missing or unknown:
        raise _malformed(f"missing fields {missing}, unknown fields {unknown}")
    if obj["format"] != FORMAT:
        raise _malformed(f"field 'format' must be {FORMAT!r}, got {obj['format']!r:.80}")
    publisher, serial, payloads = obj["publisher"], obj["serial"], obj["payloads"]
    if not isinstance(publisher, str) or not publisher.strip() or has_unsafe(publisher):
        raise _malformed("field 'publisher' must be a non-empty string without control "
                         f"characters, got {publisher!r:.80}")
    feed = obj.get("feed", "")
    if "feed" in obj and (not isinstance(feed, str) or not _FEED_NAME.fullmatch(feed)):
        raise _malformed(f"field 'feed' must be a feed name (a-z, 0-9, '-'), got {feed!r:.80}")
    if not _is_int(serial) or not 0 <= serial <= MAX_SERIAL:
        raise _malformed(f"field 'serial' must be an integer from 0 to 2^63-1, got {serial!r:.80}")
    if not isinstance(payloads, list) or not payloads:
        raise _malformed(f"field 'payloads' must be a non-empty list, got {payloads!r:.80}")
    parsed = tuple(_parse_payload(i, p) for i, p in enumerate(payloads))
    seen: set[str] = set()
    for p in parsed:
        if p.path in seen:
            raise _malformed(f"payload path {p.path!r} is listed twice")
        seen.add(p.path)
    clash = collision([p.path for p in parsed])
    if clash is not None:
        raise _malformed(f"payload paths collide: {clash}")
    return Manifest(
        format=FORMAT,
        publisher=publisher,
        serial=serial,
        issued=_timestamp(obj, "issued"),
        expires=_timestamp(obj, "expires"),
        payloads=parsed,
        sha256=hashlib.sha256(data).hexdigest(),
        key_id=key_id,
        feed=feed,
    )


def check_manifest(
    m: Manifest,
    *,
    now: datetime,
    last: LastAccepted | None,
    max_clock_skew: timedelta = timedelta(minutes=5),
) -> None:
    """Freshness and rollback rules (TUF's freeze/rollback, apt's Valid-Until). Rollback and
    replay are checked first: an old feed replayed after it expired is reported as a rollback."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    feed = f"serial {m.serial} from {m.publisher!r}"
    if m.issued > m.expires:
        raise _malformed(
            f"'issued' {human_utc(m.issued)} is after 'expires' {human_utc(m.expires)}"
        )
    if last is not None and m.serial < last.serial:
        raise VerifyError(
            f"rollback: feed {feed} is older than the last accepted serial {last.serial}",
            hint=f"an old copy is being served (a stale mirror or cache, or an attack); {_KEEP}. "
            f"If the publisher really restarted its numbering, it must publish a serial above "
            f"{last.serial}",
            where=MANIFEST_NAME,
            reason="rollback",
        )
    if last is not None and m.serial == last.serial and m.sha256 != last.sha256:
        raise VerifyError(
            f"replay ALARM: serial {m.serial} from {m.publisher!r} was already accepted with other "
            f"content (accepted manifest sha256 {last.sha256}, this one {m.sha256})",
            hint=f"one serial signed twice with different content means the publisher's signing "
            f"key may be misused or its tooling is broken: alert the security team and the "
            f"publisher; {_KEEP}",
            where=MANIFEST_NAME,
            reason="replay",
        )
    if m.expires <= now:
        raise VerifyError(
            f"feed {feed} expired at {human_utc(m.expires)} "
            f"({timedelta(seconds=int((now - m.expires).total_seconds()))} ago)",
            hint=f"the publisher must re-sign and publish it with a later 'expires'; {_KEEP}. If "
            f"this gateway's clock is wrong (now {human_utc(now)}), fix NTP (timedatectl status)",
            where=MANIFEST_NAME,
            reason="expired",
        )
    if m.issued > now + max_clock_skew:
        raise VerifyError(
            f"feed {feed} is issued at {human_utc(m.issued)}, "
            f"{timedelta(seconds=int((m.issued - now).total_seconds()))} ahead of this gateway's "
            f"clock ({human_utc(now)}; tolerance {max_clock_skew})",
            hint=f"check the gateway clock and NTP sync (timedatectl status); if it is right, the "
            f"publisher's clock is wrong; {_KEEP}",
            where=MANIFEST_NAME,
            reason="future",
        )


def verify_manifest(
    manifest_bytes: bytes,
    sig_text: bytes | str,
    trusted: Sequence[PublicKey],
    *,
    now: datetime,
    last: LastAccepted | None,
    max_clock_skew: timedelta = timedelta(minutes=5),
) -> Manifest:
    """Signature first (nothing is parsed before it verifies), then structure, then rules."""
    try:
        sig = verify(manifest_bytes, sig_text, trusted)
    except VerifyError as exc:
        exc.where = exc.where or SIGNATURE_NAME
        raise
    manifest = parse_manifest(manifest_bytes, key_id=sig.key_id_hex)
    check_manifest(manifest, now=now, last=last, max_clock_skew=max_clock_skew)
    return manifest


def check_feed_name(published_for: str, configured: str, where: str) -> None:
    """A feed published for another name is refused: the same key may sign several feeds, and
    the one with the higher serial must not replace this one. Unnamed feeds are accepted."""
    if published_for and published_for != configured:
        raise VerifyError(
            f"this was published for feed {published_for!r}, not for {configured!r}",
            hint=f"the URL serves another feed signed by the same key (a server mix-up or a "
            f"replay); check the feed's url and mirrors and tell the publisher; {_KEEP}",
            where=where,
            reason="wrong-feed",
        )


def check_payload(p: Payload, data: bytes) -> None:
    """The payload must be exactly what the manifest pinned (no mix-and-match, no endless data:
    the fetcher should stop reading at p.size + 1 bytes)."""
    if len(data) != p.size:
        raise VerifyError(
            f"payload size mismatch: got {len(data)} bytes, the signed manifest says {p.size}",
            hint=f"the server returned a truncated, different or newer file than the manifest "
            f"(e.g. a mirror mid-update); {_KEEP}; the fetch is retried",
            where=p.path,
            reason="payload-size",
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != p.sha256:
        raise VerifyError(
            f"payload sha256 mismatch: got {digest}, the signed manifest says {p.sha256}",
            hint=f"the file differs from what was signed (mirror mid-update or tampering); "
            f"{_KEEP}; the fetch is retried; if it persists, tell the publisher",
            where=p.path,
            reason="payload-hash",
        )
