"""Which code gets a feed, by its `source:`: the signed path (agent.verify.feed) or one of the
API sources, all returning the same FeedData so that parsing, guards, merge and the record are
the same for every feed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from agent.config import FeedConfig
from agent.fetch import api, misp, misp_feed, taxii
from agent.fetch.base import Fetcher
from agent.state import CachedFeed
from agent.verify import feed as signed
from agent.verify.feed import FeedData

_Pull = Callable[[FeedConfig, Fetcher, CachedFeed | None, datetime], FeedData]
PULLS: dict[str, _Pull] = {"misp": misp.fetch, "misp-feed": misp_feed.fetch, "taxii": taxii.fetch}


def fetch(feed: FeedConfig, fetcher: Fetcher, cached: CachedFeed | None, now: datetime,
          verified: FeedData | None = None) -> FeedData | None:
    """Fresh data, the cached record refreshed (fresh False), or None when unchanged.
    `verified`: the cached copy as load_cached checked it in this sync, if it did."""
    pull = PULLS.get(feed.source)
    if pull is None:
        return signed.fetch(feed, fetcher, cached, now, verified)
    return pull(feed, fetcher, cached, now)


def load_cached(feed: FeedConfig, cached: CachedFeed) -> FeedData:
    """The last good copy, checked again: signatures for signed feeds, hashes for the others."""
    if feed.source in PULLS:
        return api.load_cached(feed, cached)
    return signed.load_cached(feed, cached)
