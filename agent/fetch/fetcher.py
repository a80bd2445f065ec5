"""`HttpFetcher`, the agent's Fetcher: file:// read from the disk here, http(s) by
agent.fetch.http, which is imported at the first http(s) request only. requests and urllib3
take a tenth of a second to import on a gateway: a sync of local files (a list received by
email and saved on the gateway), a dry run or a status should not pay it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent import __version__
from agent.errors import FetchError
from agent.fetch.base import Fetcher, Response
from agent.fetch.file import read_file
from agent.fetch.url import redact, scheme_of


class HttpFetcher(Fetcher):
    """http(s) with requests (agent.fetch.http), and file:// from the local disk, under the
    same caps."""

    def __init__(self, user_agent: str = f"blocklist-agent/{__version__}") -> None:
        self.user_agent = user_agent

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
        if scheme_of(url) == "file":
            return read_file(url, max_size)
        _check_ca_file(ca_file, url)
        from agent.fetch import http

        return http.get(url, self._headers(), max_size=max_size, timeout=timeout, etag=etag,
                        last_modified=last_modified, ca_file=ca_file)

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
        if scheme_of(url) == "file":
            raise FetchError("an API request cannot go to a file:// URL", where=url,
                             reason="unsupported-scheme", hint="use the server's https:// URL")
        _check_ca_file(ca_file, url)
        from agent.fetch import http

        return http.request(method, url, self._headers(), headers=headers, body=body,
                            max_size=max_size, timeout=timeout, ca_file=ca_file)

    def _headers(self) -> dict[str, str]:
        # Only gzip: it is the one encoding decoded with a bounded output (agent.fetch.body).
        return {"User-Agent": self.user_agent, "Accept-Encoding": "gzip"}


def _check_ca_file(ca_file: str | None, url: str) -> None:
    if ca_file is not None and not os.path.isfile(ca_file):
        raise FetchError(
            f"the CA file {ca_file} does not exist or is not a file",
            hint="fix ca_file for this feed: it must be a PEM file with the CA certificate(s) "
            "that signed the feed server's certificate",
            where=redact(url),
            reason="tls",
        )
