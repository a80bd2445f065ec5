"""What the API sources (MISP, MISP feed directories, TAXII) share: one pull's requests under
the feed's limits, operator messages that name the fix, and the last good copy they leave.

A pull is many requests (pages, events); together they may not receive more than the feed's
`max_size`, and each one ends within its `timeout`. Every failure (TLS, 401/403, timeout, a
body that is not JSON) is one FetchError for that feed, so the pipeline keeps the last good copy
as for any feed. The credential never reaches a message: it travels in a header, and any text a
server sends back is cleaned of it before it is shown.

The copy of a source is a set of JSON files, each a payload in a format of agent.formats; its
fingerprint (sha256 over the files' hashes) is the record's sha256, so `load_cached` can prove
that the state directory was not edited, as the signed path does with its manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from agent.config import FeedConfig
from agent.errors import FetchError, VerifyError
from agent.fetch.base import Fetcher, Response
from agent.fetch.url import redact
from agent.state import CachedFeed, FeedRecord
from agent.util.credential import Secret, read_credential
from agent.util.timefmt import iso_z
from agent.verify.feed import FeedData

FULL_EVERY = 86400  # seconds between two complete pulls; the pulls between ask for changes only
_KEEP = "the last good copy stays enforced"


def basic_or_bearer(secret: Secret) -> str:
    """TAXII and feed servers: "user:password" is HTTP Basic, anything else a bearer token."""
    text = secret.reveal()
    if ":" in text:
        return "Basic " + base64.b64encode(text.encode()).decode()
    return "Bearer " + text


@dataclass
class Pull:
    """The requests of one pull of one feed, with their shared byte budget."""

    feed: FeedConfig
    fetcher: Fetcher
    auth_hint: str  # what to check when the server refuses the credential
    secret: Secret | None = None
    received: int = 0

    @classmethod
    def start(cls, feed: FeedConfig, fetcher: Fetcher, auth_hint: str) -> Pull:
        secret = read_credential(feed.auth_file, feed.name) if feed.auth_file else None
        return cls(feed, fetcher, auth_hint, secret)

    def call(self, method: str, url: str, headers: Mapping[str, str],
             body: bytes | None = None) -> Response:
        """One request; file:// (a local MISP feed directory) is read from the disk."""
        budget = self.feed.max_size - self.received
        if budget <= 0:
            raise self._too_large()
        try:
            if urlsplit(url).scheme.lower() == "file":
                response = self.fetcher.get(url, max_size=budget, timeout=self.feed.timeout)
            else:
                response = self.fetcher.request(
                    method, url, headers=headers, body=body, max_size=budget,
                    timeout=self.feed.timeout, ca_file=self.feed.ca_file)
        except FetchError as exc:
            raise self._explained(exc) from None
        self.received += len(response.data)
        return response

    def json(self, response: Response, what: str) -> Any:
        """The JSON document of a response; anything else is the server's fault, said so."""
        try:
            return json.loads(response.data)
        except (ValueError, RecursionError):
            start = self.clean(response.data[:60].decode("utf-8", "replace"))
            raise FetchError(
                f"the {what} is not JSON (it starts with {start!r})", where=redact(response.url),
                reason="bad-json",
                hint="check the URL (an HTML page is a proxy's or a login page); " + _KEEP,
            ) from None

    def shape(self, response: Response, problem: str) -> FetchError:
        return FetchError(f"unexpected answer: {problem}", where=redact(response.url),
                          reason="bad-json", hint="check the URL and that the server speaks "
                          f"the protocol of source: {self.feed.source}; " + _KEEP)

    def clean(self, text: str) -> str:
        """Server or library text with the credential, in every form it was sent, removed."""
        if self.secret is not None:
            for form in (self.secret.reveal(), basic_or_bearer(self.secret).split(" ", 1)[1]):
                text = text.replace(form, "***")
        return text

    def _explained(self, exc: FetchError) -> FetchError:
        hint = exc.hint
        if exc.reason in ("http-401", "http-403"):
            hint = self.auth_hint
        elif exc.reason in ("http-404", "http-405"):
            hint = f"check the URL of feed {self.feed.name!r}: " + {
                "misp": "the MISP server's base URL, without /attributes/restSearch",
                "misp-feed": "the directory that holds manifest.json",
                "taxii": "the collection URL, ending in /collections/ID/",
            }.get(self.feed.source, "the feed URL")
        return FetchError(self.clean(exc.what), where=self.clean(exc.where), reason=exc.reason,
                          hint=self.clean(hint) + ("" if _KEEP in hint else f"; {_KEEP}"))

    def _too_large(self) -> FetchError:
        return FetchError(
            f"the pull received more than this feed's max_size of {self.feed.max_size} bytes",
            where=f"feed {self.feed.name}", reason="too-large",
            hint=f"raise max_size for feed {self.feed.name!r} if the source really is this "
            f"large, or narrow what is asked (MISP filters); {_KEEP}")


def fingerprint(files: Mapping[str, bytes]) -> str:
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def dumps(document: object) -> bytes:
    """Canonical JSON: the same content always gives the same bytes, so unchanged is seen."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def accept(feed: FeedConfig, cached: CachedFeed | None, files: dict[str, bytes],
           formats: dict[str, str], cursor: dict[str, Any], now: datetime,
           publisher: str) -> FeedData:
    """The FeedData of a pull: new content, or the cached record with its new cursor."""
    sha = fingerprint(files)
    if cached is not None and cached.record.sha256 == sha:
        return FeedData(replace(cached.record, cursor=cursor, issued=iso_z(now)), (), {}, False)
    record = FeedRecord(
        name=feed.name, serial=int(now.timestamp()), sha256=sha, url=feed.url,
        accepted_at=int(now.timestamp()), publisher=publisher, issued=iso_z(now),
        files={name: formats.get(name, "") for name in files}, cursor=cursor,
    )
    payloads = tuple((name, formats[name], files[name]) for name in sorted(formats))
    return FeedData(record, payloads, files, True)


def load_cached(feed: FeedConfig, cached: CachedFeed) -> FeedData:
    """The last good copy of a source, proven unchanged since it was accepted."""
    files = {name: cached.read(name) for name in cached.record.files}
    if fingerprint(files) != cached.record.sha256:
        raise VerifyError(
            f"the cached copy of feed {feed.name!r} changed on disk", reason="payload-hash",
            where=str(cached.directory), hint="run `blocklist-agent sync` to pull it again")
    payloads = tuple((name, fmt, files[name]) for name, fmt in sorted(cached.record.files.items())
                     if fmt)
    return FeedData(cached.record, payloads, {}, False)


def previous_cursor(feed: FeedConfig, cached: CachedFeed | None, kind: str,
                    now: datetime, settings: str) -> dict[str, Any] | None:
    """The cursor to continue from, or None for a complete pull: the first one, one a day (it
    sees what no change query can: removed events, revoked tags), and after a settings change."""
    if cached is None:
        return None
    cursor = cached.record.cursor
    if cursor.get("kind") != kind or cursor.get("settings") != settings:
        return None
    full_at = cursor.get("full_at")
    if not isinstance(full_at, int) or now.timestamp() - full_at >= FULL_EVERY:
        return None
    return cursor
