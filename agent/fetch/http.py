"""The fetch edge: the only code of the agent that talks to the network (docs/design.md §1).

http(s) for `HttpFetcher` (agent.fetch.fetcher): downloads with requests under a total deadline
(`deadline`), reads the body under its caps (`body`), and follows redirects by hand so that
https -> http, loops and other schemes are refused and the deadline spans all hops. Why not
plain `requests.get(timeout=...)`: see the docstrings of `deadline` and `body`.

Each call uses its own `requests.Session`, closed at the end: calls are independent and
thread-safe, and no pooled connection outlives the deadline that watches it. Feeds refresh
every few minutes, so keep-alive would gain nothing. Proxies from the environment
(HTTPS_PROXY, NO_PROXY) are honoured, as requests does.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from agent.errors import FetchError
from agent.fetch.base import Response
from agent.fetch.body import read_body
from agent.fetch.deadline import Deadline, WatchedAdapter
from agent.fetch.failure import HopErrors
from agent.fetch.url import MAX_REDIRECTS, redact
from agent.util.escape import shown

_REDIRECT_CODES = (301, 302, 303, 307, 308)


def get(url: str, base_headers: Mapping[str, str], *, max_size: int, timeout: float,
        etag: str | None, last_modified: str | None, ca_file: str | None) -> Response:
    """An http(s) GET under the caps and the deadline, redirects followed by hand."""
    headers = {**base_headers, "Accept": "*/*"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    conditional = bool(etag or last_modified)

    with Deadline(timeout) as deadline, requests.Session() as session:
        adapter = WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        current = url
        seen = {url}
        for _hop in range(MAX_REDIRECTS + 1):
            failure = HopErrors(url, current, timeout, deadline, ca_file)
            response = _send(session, current, headers, ca_file, deadline, failure)
            try:
                status = response.status_code
                if status in _REDIRECT_CODES:
                    current = _redirect_target(response, current, seen, failure)
                    continue
                if status == 304 and conditional:
                    return Response(
                        url=current,
                        status=304,
                        data=b"",
                        etag=response.headers.get("ETag") or etag,
                        last_modified=response.headers.get("Last-Modified") or last_modified,
                    )
                if status != 200:
                    raise _refused(failure, response)
                return _complete(response, current, max_size, deadline, failure)
            finally:
                response.close()
        raise failure.error(
            f"more than {MAX_REDIRECTS} redirects",
            "the feed URL redirects too often: use the final URL in the configuration, or "
            "tell the feed publisher",
            "redirect-loop",
        )


def request(method: str, url: str, base_headers: Mapping[str, str], *,
            headers: Mapping[str, str], body: bytes | None, max_size: int, timeout: float,
            ca_file: str | None) -> Response:
    """An API request (MISP, TAXII): never redirected, since it carries the credential."""
    with Deadline(timeout) as deadline, requests.Session() as session:
        adapter = WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        failure = HopErrors(url, url, timeout, deadline, ca_file)
        response = _send(session, url, {**base_headers, **headers}, ca_file, deadline, failure,
                         method=method, body=body)
        try:
            if response.status_code in _REDIRECT_CODES:
                target = response.headers.get("Location", "(no Location)")
                raise failure.error(
                    f"the server redirected the request to {redact(target)}",
                    "API requests are not redirected (they carry the credential): use the "
                    "final URL in the configuration; a redirect to a login page means the "
                    "server did not take the credential",
                    "redirect-invalid",
                )
            if response.status_code != 200:
                raise _refused(failure, response)
            return _complete(response, url, max_size, deadline, failure)
        finally:
            response.close()


def _complete(response: requests.Response, url: str, max_size: int, deadline: Deadline,
              failure: HopErrors) -> Response:
    """The 200 response with its body read under the caps."""
    data = read_body(response, max_size, deadline, failure)
    return Response(
        url=url,
        status=200,
        data=data,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        headers={name.lower(): value for name, value in response.headers.items()},
    )


def _send(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    ca_file: str | None,
    deadline: Deadline,
    failure: HopErrors,
    *,
    method: str = "GET",
    body: bytes | None = None,
) -> requests.Response:
    """One request without redirects, returning once the headers are in (the body is
    streamed)."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise failure.timed_out()
    try:
        return session.request(
            method,
            url,
            headers=headers,
            data=body,
            stream=True,
            allow_redirects=False,
            timeout=(remaining, remaining),
            verify=ca_file if ca_file is not None else True,
        )
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise failure.from_exception(exc) from exc


def _redirect_target(
    response: requests.Response, current: str, seen: set[str], failure: HopErrors
) -> str:
    location = response.headers.get("Location")
    if not location:
        raise failure.error(
            f"HTTP {response.status_code} redirect without a Location header",
            "the feed server is misconfigured; tell the feed publisher",
            "redirect-invalid",
        )
    target = urljoin(current, location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise failure.error(
            f"redirect to {shown(redact(target))}, which is not an http(s) URL",
            "the feed server is misconfigured or hostile; tell the feed publisher",
            "redirect-invalid",
        )
    if urlsplit(current).scheme.lower() == "https" and scheme == "http":
        raise failure.error(
            f"redirect from https to plain http ({redact(target)}) refused",
            "a feed fetched over https is never downgraded to http; use the https URL of the "
            "feed, or tell the feed publisher their server redirects to http",
            "redirect-downgrade",
        )
    if target in seen:
        raise failure.error(
            f"redirect loop back to {redact(target)}",
            "the feed server is misconfigured; tell the feed publisher",
            "redirect-loop",
        )
    seen.add(target)
    return target


def _refused(failure: HopErrors, response: requests.Response) -> FetchError:
    """The FetchError of a non-200 answer, with the Retry-After the server asked for."""
    error = failure.http(response.status_code, response.reason or "")
    error.retry_after = retry_after(response.headers.get("Retry-After"))
    return error


MAX_RETRY_AFTER = 86400.0  # seconds: a server asking for more is asked again after a day


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if absent
    or unreadable. A 429 or 503 with it says when the server wants to be asked again: asking
    sooner only prolongs the refusal."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER))
