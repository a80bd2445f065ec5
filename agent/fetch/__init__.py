"""Downloading feeds: the `Fetcher` interface and its http(s)/file:// implementation, under a total
deadline and size caps, and the URL helpers that place a payload or a signature beside a feed."""

from agent.fetch.base import Fetcher, Response
from agent.fetch.fetcher import HttpFetcher
from agent.fetch.url import MAX_REDIRECTS, SCHEMES, join_url, signature_url

__all__ = [
    "MAX_REDIRECTS",
    "SCHEMES",
    "Fetcher",
    "HttpFetcher",
    "Response",
    "join_url",
    "signature_url",
]
