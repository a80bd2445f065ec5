"""`source: misp`: attributes from a MISP server's REST API, `POST /attributes/restSearch`.

The request is MISP's documented one: a JSON body with `returnFormat: json`, the feed's filters
under MISP's own names (to_ids, published, tags, last, enforceWarninglist, excludeDecayed),
`limit`/`page` paging (pages from 1 until one comes back short), and the key in the
`Authorization` header. The first pull is complete; the ones after it ask only for attributes
changed since the newest `timestamp` seen, including soft-deleted ones (`deleted: [0, 1]`) and,
so that a to_ids flag switched off is seen, without the to_ids filter (the agent applies it).
Once a day the pull is complete again, which catches what a change query cannot (an event
unpublished or untagged, an attribute that left the `last` window).

The copy kept is one restSearch-shaped document of the attributes by uuid, trimmed to what the
mapping and `why` need (agent.formats.misp_attributes reads it).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from agent.config import FeedConfig
from agent.config.model import MispFilters
from agent.errors import AgentError
from agent.fetch.api import Pull, accept, dumps, load_cached, previous_cursor
from agent.fetch.base import Fetcher
from agent.formats.misp import is_true
from agent.state import CachedFeed
from agent.verify.feed import FeedData

PATH = "/attributes/restSearch"
PAYLOAD = "attributes.json"
MAX_PAGES = 10_000
_KEPT = ("id", "uuid", "type", "value", "to_ids", "deleted", "timestamp", "event_id",
         "object_id", "decay_score")
_EVENT_KEPT = ("id", "uuid", "info")
_AUTH_HINT = ("MISP refused the key: check that auth_file holds the API key of an API-enabled "
              "user (MISP: My Profile > Auth keys), that the key is not expired or restricted to "
              "other addresses, and that the user may read these events")


def fetch(feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime
          ) -> FeedData:
    filters = feed.filters or MispFilters()
    settings = hashlib.sha256(repr(filters).encode()).hexdigest()[:16]
    cursor = previous_cursor(feed, cached, "misp", now, settings)
    attributes: dict[str, dict[str, Any]] = {}
    newest = 0
    if cursor is not None and cached is not None:
        loaded = _load(feed, cached)
        if loaded is None:
            cursor = None  # the copy cannot be trusted to build on: pull everything again
        else:
            attributes, newest = loaded, _int(cursor.get("timestamp"))
    pull = Pull.start(feed, fetcher, _AUTH_HINT)
    assert pull.secret is not None  # config: a misp source has an auth_file
    headers = {"Authorization": pull.secret.reveal(), "Accept": "application/json",
               "Content-Type": "application/json"}
    url = feed.url.rstrip("/") + PATH
    query = search_body(filters, since=newest if cursor is not None else None)
    for page in range(1, MAX_PAGES + 1):
        response = pull.call("POST", url, headers, dumps({**query, "page": page}))
        items = _items(pull, response, pull.json(response, "MISP search answer"))
        for attribute in items:
            newest = max(newest, _int(attribute.get("timestamp")))
            uuid = attribute.get("uuid")
            if not isinstance(uuid, str) or not uuid:
                continue
            # deleted, or no longer for detection: gone (the agent never blocks either)
            if is_true(attribute.get("deleted"), False) or not is_true(
                    attribute.get("to_ids"), True):
                attributes.pop(uuid, None)
            else:
                attributes[uuid] = _trimmed(attribute)
        if len(items) < filters.limit:
            break
    else:
        raise pull.shape(response, f"more than {MAX_PAGES} pages of {filters.limit} attributes")
    document = {"response": {"Attribute": [attributes[k] for k in sorted(attributes)]}}
    full_at = int(now.timestamp()) if cursor is None else cursor["full_at"]
    new_cursor = {"kind": "misp", "settings": settings, "timestamp": newest, "full_at": full_at}
    return accept(feed, cached, {PAYLOAD: dumps(document)}, {PAYLOAD: "misp-attributes"},
                  new_cursor, now, publisher=f"MISP {feed.url}")


def search_body(filters: MispFilters, *, since: int | None) -> dict[str, Any]:
    """The restSearch body; `since` (a change query) adds timestamp and deleted attributes."""
    body: dict[str, Any] = {"returnFormat": "json", "limit": filters.limit}
    if filters.to_ids and since is None:
        body["to_ids"] = 1
    if filters.published is not None:
        body["published"] = 1 if filters.published else 0
    if filters.tags:
        body["tags"] = list(filters.tags)
    if filters.last is not None:
        body["last"] = _misp_duration(filters.last)
    if filters.warninglists:
        body["enforceWarninglist"] = 1
    if filters.exclude_decayed:
        body["includeDecayScore"] = 1
        body["excludeDecayed"] = 1
    if since is not None:
        body["timestamp"] = since
        body["deleted"] = [0, 1]
    return body


def _misp_duration(seconds: int) -> str:
    """MISP's time filter text ("30d", "12h", "90m", "45s"): the largest exact unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _items(pull: Pull, response: Any, document: Any) -> list[dict[str, Any]]:
    """The attributes of one page: `{"response": {"Attribute": [...]}}` (or `[]` when empty)."""
    if not isinstance(document, dict) or "response" not in document:
        name = document.get("name") if isinstance(document, dict) else None
        detail = f": {pull.clean(str(name))[:120]}" if name else ""
        raise pull.shape(response, f"no \"response\" in the MISP answer{detail}")
    inner = document["response"]
    if inner in ([], {}):
        return []
    listed = inner.get("Attribute") if isinstance(inner, dict) else None
    if not isinstance(listed, list):
        raise pull.shape(response, "the MISP answer has no Attribute list")
    return [item for item in listed if isinstance(item, dict)]


def _trimmed(attribute: dict[str, Any]) -> dict[str, Any]:
    kept = {key: attribute[key] for key in _KEPT if key in attribute}
    event = attribute.get("Event")
    if isinstance(event, dict):
        kept["Event"] = {key: event[key] for key in _EVENT_KEPT if key in event}
    return kept


def _load(feed: FeedConfig, cached: CachedFeed) -> dict[str, dict[str, Any]] | None:
    """The attributes of the last good copy by uuid, or None if it fails its check."""
    try:
        payloads = load_cached(feed, cached).payloads
        listed = json.loads(payloads[0][2])["response"]["Attribute"]
    except (AgentError, ValueError, KeyError, TypeError, IndexError):
        return None
    return {a["uuid"]: a for a in listed if isinstance(a, dict) and isinstance(a.get("uuid"), str)}


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
