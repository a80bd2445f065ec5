"""`source: misp-feed`: a MISP feed directory, as MISP itself exports it and as CIRCL and others
publish it: `manifest.json` (every event by uuid, with its `timestamp`), one `<uuid>.json` per
event, and `hashes.csv` (md5 of values, for MISP's correlation; not needed to block).

Each pull reads the manifest and downloads only the events whose timestamp changed since the
copy kept (or that are new); an event gone from the manifest is dropped with its indicators. The
event files are kept as served, one payload each, read by agent.formats.misp_attributes. Event
names come from the manifest, so they must be uuids: anything else could climb out of the
directory and is refused.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from agent.config import FeedConfig
from agent.errors import AgentError
from agent.fetch.api import Pull, accept, basic_or_bearer, load_cached
from agent.fetch.base import Fetcher
from agent.state import CachedFeed
from agent.verify.feed import FeedData

MANIFEST = "manifest.json"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_AUTH_HINT = ("the feed server refused the credential: check auth_file ('user:password' for "
              "HTTP Basic, or the token the publisher gave you)")


def directory_url(url: str) -> str:
    """The feed directory, whether the URL names it or its manifest.json."""
    if url.endswith("/" + MANIFEST):
        url = url[: -len(MANIFEST)]
    return url if url.endswith("/") else url + "/"


def fetch(feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime
          ) -> FeedData:
    pull = Pull.start(feed, fetcher, _AUTH_HINT)
    headers = {"Accept": "application/json"}
    if pull.secret is not None:
        headers["Authorization"] = basic_or_bearer(pull.secret)
    base = directory_url(feed.url)
    response = pull.call("GET", base + MANIFEST, headers)
    manifest = pull.json(response, "feed manifest")
    if not isinstance(manifest, dict):
        raise pull.shape(response, "manifest.json is not an object of events by uuid")
    known: dict[str, Any] = {}
    kept: dict[str, bytes] = {}
    if cached is not None and cached.record.cursor.get("kind") == "misp-feed":
        known = cached.record.cursor.get("events") or {}
        kept = _verified(feed, cached)
    files: dict[str, bytes] = {}
    stamps: dict[str, str] = {}
    for uuid in sorted(manifest):
        meta = manifest[uuid]
        if not _UUID.fullmatch(uuid) or not isinstance(meta, dict):
            raise pull.shape(response, f"manifest.json lists {uuid[:60]!r}, not an event uuid")
        stamp = str(meta.get("timestamp", ""))
        name = f"{uuid}.json"
        data = kept.get(name) if known.get(uuid) == stamp and stamp else None
        if data is None:
            event = pull.call("GET", base + name, headers)
            document = pull.json(event, f"event {uuid}")
            inner = document.get("Event") if isinstance(document, dict) else None
            if not isinstance(inner, dict):
                raise pull.shape(event, f"{name} is not a MISP event ({{\"Event\": ...}})")
            data = event.data
        files[name] = data
        stamps[uuid] = stamp
    cursor = {"kind": "misp-feed", "events": stamps}
    return accept(feed, cached, files, dict.fromkeys(files, "misp-attributes"), cursor, now,
                  publisher=f"MISP feed {base}")


def _verified(feed: FeedConfig, cached: CachedFeed) -> dict[str, bytes]:
    """The event files of the last good copy, if it passes its check; none otherwise (then
    every event is downloaded again rather than built on a copy edited on disk)."""
    try:
        return {name: data for name, _, data in load_cached(feed, cached).payloads}
    except AgentError:
        return {}
