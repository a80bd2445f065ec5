"""The daemon's fetcher: the real one, asking the loop before every download or API page, so
that SIGTERM stops before the next request and the watchdog is fed during a long sync."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agent.fetch import Fetcher, Response


class Interrupted(BaseException):
    """SIGTERM arrived during a sync: stop before the next download (nothing applied yet)."""


class Stoppable(Fetcher):
    """The real fetcher, asking the loop before every download (SIGTERM, watchdog ping)."""

    def __init__(self, inner: Fetcher, before_get: Callable[[], None]) -> None:
        self.inner = inner
        self.before_get = before_get

    def get(self, url: str, *, max_size: int, timeout: float, etag: str | None = None,
            last_modified: str | None = None, ca_file: str | None = None) -> Response:
        self.before_get()
        return self.inner.get(url, max_size=max_size, timeout=timeout, etag=etag,
                              last_modified=last_modified, ca_file=ca_file)

    def request(self, method: str, url: str, *, headers: Mapping[str, str],
                body: bytes | None = None, max_size: int, timeout: float,
                ca_file: str | None = None) -> Response:
        """API sources (MISP, TAXII) ask the loop before every page too."""
        self.before_get()
        return self.inner.request(method, url, headers=headers, body=body, max_size=max_size,
                                  timeout=timeout, ca_file=ca_file)
