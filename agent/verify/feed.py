"""Get one feed as verified bytes: freshly downloaded, or the last good copy re-verified.

This is where the fetch edge and the pure verification rules meet, in the order the threat
model demands: manifest, then its signature, then every rule (rollback, replay, freeze), and only
then the payloads, each capped at the size the signed manifest pins and checked against its
sha256. Nothing is parsed before it is verified. A refusal raises; the caller falls back to
`load_cached`, which re-verifies the last good copy (docs/design.md §2: the cache is re-verified
when loaded, so a tampered state directory is not trusted either). The clock comes in as `now`:
the time a copy is accepted at is the time of the sync that accepted it.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from agent.config import FeedConfig
from agent.errors import AgentError, FetchError, StateError, VerifyError
from agent.fetch import Fetcher, Response, join_url, signature_url
from agent.state import CachedFeed, FeedRecord
from agent.util.timefmt import iso_z
from agent.verify import lists as list_rules
from agent.verify.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    LastAccepted,
    Manifest,
    check_feed_name,
    check_payload,
    parse_manifest,
    payload_path_error,
    verify_manifest,
)
from agent.verify.minisign import PublicKey, load_public_key
from agent.verify.minisign import verify as verify_signature

MANIFEST_MAX = 4 * 1024 * 1024
SIGNATURE_MAX = 16 * 1024
_KEEP = "the last good copy stays enforced"


@dataclass(frozen=True)
class FeedData:
    """A verified feed: what to remember about it, and its payloads ready to parse."""

    record: FeedRecord
    payloads: tuple[tuple[str, str, bytes], ...]  # (file name, format, bytes)
    files: dict[str, bytes]  # everything to keep as the last good copy
    fresh: bool  # downloaded in this run (False: the cached copy)
    # the sha256 each payload was checked against, by file name (not every path knows it):
    # what the validated result's key (agent.feedcache) takes instead of hashing again
    hashes: Mapping[str, str] = field(default_factory=dict)


def trusted_keys(feed: FeedConfig) -> list[PublicKey]:
    """The feed's keys: base64 key lines, or paths to minisign .pub files."""
    return [load_public_key(text) for text in feed.trusted_keys]


def _get_first(
    feed: FeedConfig, fetcher: Fetcher, *, max_size: int, cached: CachedFeed | None = None
) -> Response:
    """Try the feed URL then its mirrors; the first answer wins."""
    errors: list[AgentError] = []
    for url in (feed.url, *feed.mirrors):
        etag = last_modified = None
        if cached is not None and cached.record.url == url:
            etag, last_modified = cached.record.etag, cached.record.last_modified
        try:
            return fetcher.get(url, max_size=max_size, timeout=feed.timeout, etag=etag,
                               last_modified=last_modified, ca_file=feed.ca_file)
        except FetchError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    detail = "; ".join(f"{e.where or '?'}: {e.what}" for e in errors)
    raise FetchError(f"every URL of feed {feed.name!r} failed: {detail}", reason=errors[0].reason,
                     hint=errors[0].hint)


def fetch(feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime,
          verified: FeedData | None = None) -> FeedData | None:
    """Download and verify; None when the feed is unchanged since the cached copy.
    `verified`: that copy, as `load_cached` checked it in this sync (its payloads are not
    read and hashed again to see whether the new manifest still lists them)."""
    if feed.format == "manifest":
        return _fetch_manifest_feed(feed, fetcher, cached, now, verified)
    return _fetch_list_feed(feed, fetcher, cached, now)


def _fetch_manifest_feed(
    feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime,
    verified: FeedData | None = None,
) -> FeedData | None:
    resp = _get_first(feed, fetcher, max_size=MANIFEST_MAX, cached=cached)
    if resp.status == 304 and cached is not None:
        if expired(cached.record, now):  # a frozen feed is refused whether or not it is resent
            raise VerifyError(
                f"feed serial {cached.record.serial} from {cached.record.publisher!r} expired at "
                f"{cached.record.expires} and the server still serves it (HTTP 304)",
                where=resp.url, reason="expired",
                hint=f"the publisher must re-sign and publish it with a later 'expires'; {_KEEP}. "
                "If this gateway's clock is wrong, fix NTP (timedatectl status)",
            )
        return None
    # the signature comes from wherever the manifest came from (mirror or redirect target)
    sig = fetcher.get(signature_url(resp.url), max_size=SIGNATURE_MAX, timeout=feed.timeout,
                      ca_file=feed.ca_file)
    last = LastAccepted(cached.record.serial, cached.record.sha256) if cached else None
    manifest = verify_manifest(resp.data, sig.data, trusted_keys(feed), now=now, last=last)
    check_feed_name(manifest.feed, feed.name, resp.url)
    if cached is not None and manifest.sha256 == cached.record.sha256:
        if (resp.etag, resp.last_modified) != (cached.record.etag, cached.record.last_modified):
            return FeedData(replace(cached.record, etag=resp.etag,
                                    last_modified=resp.last_modified), (), {}, False)
        return None
    files = {MANIFEST_NAME: resp.data, SIGNATURE_NAME: sig.data}
    payloads = []
    for p in manifest.payloads:
        if p.size > feed.max_size:
            raise VerifyError(
                f"payload {p.path} is {p.size} bytes, more than max_size ({feed.max_size})",
                where=f"feed {feed.name}", reason="payload-size",
                hint=f"raise max_size for feed {feed.name!r} if this size is expected; {_KEEP}",
            )
        data = _reuse(cached, p.path, p.sha256, verified)
        if data is None:
            data = fetcher.get(join_url(resp.url, p.path), max_size=p.size,
                               timeout=feed.timeout, ca_file=feed.ca_file).data
        check_payload(p, data)
        files[p.path] = data
        payloads.append((p.path, p.format, data))
    record = _record(feed, manifest, resp, files, {p.path: p.format for p in manifest.payloads},
                     now)
    return FeedData(record, tuple(payloads), files, True,
                    {p.path: p.sha256 for p in manifest.payloads})


def _reuse(cached: CachedFeed | None, path: str, sha256: str,
           verified: FeedData | None = None) -> bytes | None:
    """An unchanged payload is not downloaded again (its hash is pinned by the manifest)."""
    if cached is None or path not in cached.record.files:
        return None
    if verified is not None and path in verified.hashes:  # checked in this sync already
        if verified.hashes[path] != sha256:
            return None
        return next((body for name, _, body in verified.payloads if name == path), None)
    try:
        data = cached.read(path)
    except StateError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _record(feed: FeedConfig, m: Manifest, resp: Response, files: dict[str, bytes],
            formats: dict[str, str], now: datetime) -> FeedRecord:
    return FeedRecord(
        name=feed.name, serial=m.serial, sha256=m.sha256, url=resp.url,
        accepted_at=int(now.timestamp()), publisher=m.publisher, issued=iso_z(m.issued),
        expires=iso_z(m.expires), key_id=m.key_id, etag=resp.etag,
        last_modified=resp.last_modified,
        files={name: formats.get(name, "") for name in files},
    )


def _list_name(url: str) -> str:
    """The cached list's file name, from its URL when that is a safe, free name."""
    name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "list.txt"
    if payload_path_error(name) is not None or payload_path_error(name + ".minisig") is not None:
        return "list.txt"
    return name


def _fetch_list_feed(
    feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime
) -> FeedData | None:
    """A single list: signed (`list.txt` + `list.txt.minisig`) or an explicit unsigned opt-in."""
    resp = _get_first(feed, fetcher, max_size=feed.max_size, cached=cached)
    if resp.status == 304 and cached is not None:
        if expired(cached.record, now, feed):
            raise list_rules.too_old(cached.record.serial, feed, now, resp.url)
        return None
    sha = hashlib.sha256(resp.data).hexdigest()
    name = _list_name(feed.url)
    files = {name: resp.data}
    serial = 0
    key_id = ""
    if feed.signature != "none":
        sig_resp = fetcher.get(signature_url(resp.url), max_size=SIGNATURE_MAX,
                               timeout=feed.timeout, ca_file=feed.ca_file)
        sig = verify_signature(resp.data, sig_resp.data, trusted_keys(feed))
        files[name + ".minisig"] = sig_resp.data
        last = LastAccepted(cached.record.serial, cached.record.sha256) if cached else None
        serial = list_rules.check_list(sig, sha, feed, now, last, resp.url)
        key_id = sig.key_id_hex
    issued, expires = list_rules.times(serial, feed)
    if cached is not None and sha == cached.record.sha256:
        return FeedData(replace(cached.record, etag=resp.etag, last_modified=resp.last_modified,
                                issued=issued, expires=expires), (), {}, False, {name: sha})
    record = FeedRecord(
        name=feed.name, serial=serial, sha256=sha, url=resp.url, accepted_at=int(now.timestamp()),
        key_id=key_id, etag=resp.etag, last_modified=resp.last_modified,
        files={n: (feed.format if n == name else "") for n in files}, issued=issued,
        expires=expires,
    )
    return FeedData(record, ((name, feed.format, resp.data),), files, True, {name: sha})


def load_cached(feed: FeedConfig, cached: CachedFeed) -> FeedData:
    """The last good copy, verified again with the keys configured now."""
    rec = cached.record
    if feed.format == "manifest":
        data = cached.read(MANIFEST_NAME)
        verify_signature(data, cached.read(SIGNATURE_NAME), trusted_keys(feed))
        manifest = parse_manifest(data)
        check_feed_name(manifest.feed, feed.name, str(cached.directory))
        payloads = []
        for p in manifest.payloads:
            body = cached.read(p.path)
            check_payload(p, body)
            payloads.append((p.path, p.format, body))
        return FeedData(rec, tuple(payloads), {}, False,
                        {p.path: p.sha256 for p in manifest.payloads})
    name = next(n for n, fmt in rec.files.items() if fmt)
    body = cached.read(name)
    if feed.signature != "none":
        sig = verify_signature(body, cached.read(name + ".minisig"), trusted_keys(feed))
        list_rules.check_name(sig, feed, str(cached.directory))
    elif hashlib.sha256(body).hexdigest() != rec.sha256:
        raise VerifyError(f"the cached copy of {name} changed on disk", where=str(cached.directory),
                          reason="payload-hash", hint="run `blocklist-agent sync` to fetch again")
    return FeedData(rec, ((name, feed.format, body),), {}, False)


def expired(record: FeedRecord, now: datetime, feed: FeedConfig | None = None) -> bool:
    """Past its `expires`; for a signed list, past the signed time plus the feed's max_age as
    configured now (a max_age lowered since the copy was accepted applies to it at once)."""
    when = record.expires
    if feed is not None and feed.format != "manifest" and record.issued:
        when = list_rules.times(record.serial, feed)[1]
    if not when:
        return False
    return datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) <= now
