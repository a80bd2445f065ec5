"""What the rest of the agent sees of the network: a `Fetcher` that returns a `Response`.

A feed server is not trusted. It may be slow on purpose, send endless or compressed data, redirect
in circles or to plain HTTP, or present a certificate from the wrong CA; the signature check comes
later and only protects the *content*. Whatever the server does, a download ends within `timeout`
seconds and `max_size` bytes with either the bytes or one `FetchError` whose `reason` is a stable
code:

    connect, timeout, tls, http-<code>, too-large, not-found, io, incomplete, encoding,
    redirect-loop, redirect-downgrade, redirect-invalid, unsupported-scheme, bad-url

Tests replace the whole `Fetcher`; `lab/httpserver.py` provides real servers for the tests of
`HttpFetcher` itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.errors import FetchError


@dataclass(frozen=True)
class Response:
    """One completed download. `status` is 200, or 304 (not modified) with `data` empty."""

    url: str  # final URL after redirects: payload paths are resolved against it
    status: int
    data: bytes = field(repr=False)  # can be hundreds of MiB: keep it out of log lines
    etag: str | None
    last_modified: str | None
    # response headers, names lowercased: the API sources read their paging headers here
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class Fetcher(ABC):
    """The only network interface of the agent; tests may replace it with an in-memory one."""

    @abstractmethod
    def get(
        self,
        url: str,
        *,
        max_size: int,
        timeout: float,
        etag: str | None = None,
        last_modified: str | None = None,
        ca_file: str | None = None,
    ) -> Response:
        """Download `url` completely, or raise `FetchError`.

        `etag` / `last_modified` are the validators of the copy the caller already has: when given,
        the request is conditional and an unchanged resource comes back as status 304 with no data.
        `timeout` bounds the whole call (all redirects, handshake, headers and body); `max_size`
        bounds the bytes returned (after any Content-Encoding is decoded). `ca_file` replaces the
        system CA store for https (a private PKI).
        """

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_size: int,
        timeout: float,
        ca_file: str | None = None,
    ) -> Response:
        """One API call (MISP, TAXII): `method` with `headers` and `body`, status 200 or a
        FetchError. Redirects are refused, not followed: the request carries a credential, and an
        API that redirects is sending the agent to a login page or to another host.

        Not abstract, so that a test's in-memory Fetcher without API feeds needs no change.
        """
        raise FetchError(f"{type(self).__name__} cannot send API requests", where=url,
                         reason="unsupported-scheme",
                         hint="this fetcher serves signed feeds only")
