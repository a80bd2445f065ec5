"""`source: taxii`: STIX 2.1 indicators from a TAXII 2.1 collection (OASIS TAXII 2.1, "Get
Objects").

`GET <collection>/objects/?match[type]=indicator` with `Accept: application/taxii+json;
version=2.1` and the credential (HTTP Basic for "user:password", else a bearer token). Pages
follow the envelope: while `more` is true, the next request carries `next`; a server that pages
without `next` is followed with `added_after` set to the page's `X-TAXII-Date-Added-Last`, as
the standard allows. The pull after a complete one asks only for objects added after the last
`X-TAXII-Date-Added-Last` seen; once a day the pull is complete again, since TAXII cannot say
that an object was removed.

The copy kept is one STIX bundle of the collection's indicators, the latest version of each by
`modified`, read by agent.formats.stix2 (which honours `revoked` and `valid_until`). Its file is
named after the collection, so that `why` names the collection with the indicator's id.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from agent.config import FeedConfig
from agent.errors import AgentError
from agent.fetch.api import Pull, accept, basic_or_bearer, dumps, load_cached, previous_cursor
from agent.fetch.base import Fetcher
from agent.state import CachedFeed
from agent.verify.feed import FeedData

MEDIA_TYPE = "application/taxii+json;version=2.1"
PAGE = 1000  # objects asked per page; the server may send fewer
MAX_PAGES = 10_000
_AUTH_HINT = ("the TAXII server refused the credential: check that auth_file holds "
              "'user:password' (HTTP Basic) or the API token, and that this account may read "
              "the collection")


def objects_url(collection: str) -> str:
    url = collection if collection.endswith("/") else collection + "/"
    return url if url.endswith("/objects/") else url + "objects/"


def payload_name(collection: str) -> str:
    """"collection-ID.json": the collection's id (the URL's last segment), safe as a file name."""
    segments = [s for s in urlsplit(collection).path.split("/") if s and s != "objects"]
    ident = re.sub(r"[^A-Za-z0-9._-]", "_", segments[-1] if segments else "taxii")[:80]
    return f"collection-{ident.lstrip('.') or 'taxii'}.json"


def fetch(feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime
          ) -> FeedData:
    name = payload_name(feed.url)
    settings = hashlib.sha256(feed.url.encode()).hexdigest()[:16]
    cursor = previous_cursor(feed, cached, "taxii", now, settings)
    objects: dict[str, dict[str, Any]] = {}
    added_after = None
    if cursor is not None and cached is not None:
        loaded = _load(feed, cached)
        if loaded is None:
            cursor = None
        else:
            objects, added_after = loaded, cursor.get("added_after")
    pull = Pull.start(feed, fetcher, _AUTH_HINT)
    assert pull.secret is not None  # config: a taxii source has an auth_file
    headers = {"Accept": MEDIA_TYPE, "Authorization": basic_or_bearer(pull.secret)}
    base = {"match[type]": "indicator", "limit": str(PAGE)}
    if added_after:
        base["added_after"] = added_after
    query = dict(base)
    for _page in range(MAX_PAGES):
        response = pull.call("GET", objects_url(feed.url) + "?" + urlencode(query), headers)
        envelope = pull.json(response, "TAXII envelope")
        if not isinstance(envelope, dict):
            raise pull.shape(response, "the TAXII answer is not an envelope object")
        listed = envelope.get("objects", [])
        if not isinstance(listed, list):
            raise pull.shape(response, "the envelope's objects is not a list")
        for obj in listed:
            _keep(objects, obj)
        last = response.headers.get("x-taxii-date-added-last")
        added_after = last or added_after
        if envelope.get("more") is not True:
            break
        token = envelope.get("next")
        if isinstance(token, str) and token:
            query = {**base, "next": token}
        elif last:
            query = {**base, "added_after": last}
        else:
            raise pull.shape(response, "more is true but there is neither next nor "
                             "X-TAXII-Date-Added-Last to continue from")
    else:
        raise pull.shape(response, f"more than {MAX_PAGES} pages")
    bundle = {"type": "bundle", "id": f"bundle--{settings}",
              "objects": [objects[k] for k in sorted(objects)]}
    full_at = int(now.timestamp()) if cursor is None else cursor["full_at"]
    new_cursor = {"kind": "taxii", "settings": settings, "added_after": added_after,
                  "full_at": full_at}
    return accept(feed, cached, {name: dumps(bundle)}, {name: "stix2"}, new_cursor, now,
                  publisher=f"TAXII {feed.url}")


def _keep(objects: dict[str, dict[str, Any]], obj: object) -> None:
    """The latest version of each indicator (STIX timestamps compare as text, all in UTC)."""
    if not isinstance(obj, dict) or obj.get("type") != "indicator":
        return
    ident = obj.get("id")
    if not isinstance(ident, str):
        return
    old = objects.get(ident)
    if old is None or str(obj.get("modified", "")) >= str(old.get("modified", "")):
        objects[ident] = obj


def _load(feed: FeedConfig, cached: CachedFeed) -> dict[str, dict[str, Any]] | None:
    try:
        listed = json.loads(load_cached(feed, cached).payloads[0][2])["objects"]
    except (AgentError, ValueError, KeyError, TypeError, IndexError):
        return None
    return {o["id"]: o for o in listed if isinstance(o, dict) and isinstance(o.get("id"), str)}
