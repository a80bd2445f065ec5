"""The fetch edge: the only code of the agent that talks to the network (design section 1).

A feed server is not trusted. It may be slow on purpose, send endless or compressed data, redirect
in circles or to plain HTTP, or present a certificate from the wrong CA; the signature check comes
later and only protects the *content*. This module makes sure that whatever the server does, a
download ends within `timeout` seconds and `max_size` bytes with either the bytes or one
`FetchError` whose `reason` is a stable code:

    connect, timeout, tls, http-<code>, too-large, not-found, io, incomplete, encoding,
    redirect-loop, redirect-downgrade, redirect-invalid, unsupported-scheme, bad-url

Why the machinery below rather than plain `requests.get(timeout=...)`:

- requests' timeouts bound each socket operation, not the download: a server trickling one byte
  per second never trips them. A `_Deadline` timer shuts the request's sockets down at the
  deadline, wherever the request is (TLS handshake, headers, body).
- urllib3 1.26 (Debian 12) decompresses a whole network read at once (a 64 KiB gzip read can
  become 64 MiB) and does not notice a body shorter than its Content-Length. The body is read raw
  and decoded here with bounded output, and its length is checked.
- Redirects are followed by hand so that https -> http, loops and other schemes are refused and
  the deadline spans all hops.

Tests replace the whole `Fetcher`; `tests/httpserver.py` provides real servers for this module's
own tests.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import socket
import ssl
import stat
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from agent import __version__
from agent.errors import FetchError, VerifyError

MAX_REDIRECTS = 5
SCHEMES = ("http", "https", "file")
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Response:
    """One completed download. `status` is 200, or 304 (not modified) with `data` empty."""

    url: str  # final URL after redirects: payload paths are resolved against it
    status: int
    data: bytes = field(repr=False)  # can be hundreds of MiB: keep it out of log lines
    etag: str | None
    last_modified: str | None


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


class HttpFetcher(Fetcher):
    """http(s) with requests, and file:// from the local disk, under the same caps.

    Each call uses its own `requests.Session`, closed at the end: calls are independent and
    thread-safe, and no pooled connection outlives the deadline that watches it. Feeds refresh
    every few minutes, so keep-alive would gain nothing. Proxies from the environment
    (HTTPS_PROXY, NO_PROXY) are honoured, as requests does.
    """

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
        scheme = _scheme(url)
        if scheme == "file":
            return _read_file(url, max_size)
        if ca_file is not None and not os.path.isfile(ca_file):
            raise FetchError(
                f"the CA file {ca_file} does not exist or is not a file",
                hint="fix ca_file for this feed: it must be a PEM file with the CA certificate(s) "
                "that signed the feed server's certificate",
                where=_redact(url),
                reason="tls",
            )
        headers = {
            "User-Agent": self.user_agent,
            "Accept": "*/*",
            # Only gzip: it is the one encoding decoded here with a bounded output (see _Decoder).
            "Accept-Encoding": "gzip",
        }
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        conditional = bool(etag or last_modified)

        with _Deadline(timeout) as deadline, requests.Session() as session:
            adapter = _WatchedAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            current = url
            seen = {url}
            for _hop in range(MAX_REDIRECTS + 1):
                failure = _Failure(url, current, timeout, deadline, ca_file)
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
                        raise failure.http(status, response.reason or "")
                    data = _read_body(response, max_size, deadline, failure)
                    return Response(
                        url=current,
                        status=200,
                        data=data,
                        etag=response.headers.get("ETag"),
                        last_modified=response.headers.get("Last-Modified"),
                    )
                finally:
                    response.close()
            raise failure.error(
                f"more than {MAX_REDIRECTS} redirects",
                "the feed URL redirects too often: use the final URL in the configuration, or "
                "tell the feed publisher",
                "redirect-loop",
            )


def join_url(base: str, relative: str) -> str:
    """The URL of a payload named `relative` in the manifest at `base` (http, https or file).

    `relative` comes from a signed manifest, but a signature only says who wrote it: a path that
    climbs out of the feed's directory ("../x", "/etc/passwd", "http://other/x") would let one
    publisher's manifest reach files or hosts it does not own, so it is refused as a malformed
    manifest. Each segment is percent-encoded (the path names a file, it is not a URL), so "%2e%2e"
    cannot become ".." on the server. The base's query is kept (access parameters of the feed,
    e.g. a token), its fragment dropped.
    """

    def refuse(why: str) -> VerifyError:
        return VerifyError(
            f"payload path {relative!r} in the manifest {why}",
            hint="payload paths must name a file in the manifest's own directory (no '..', no "
            "leading '/', no URL); the feed is refused: tell the feed publisher",
            where=_redact(base),
            reason="malformed-manifest",
        )

    parts = urlsplit(base)
    _check_scheme(parts.scheme, base)
    if not relative:
        raise refuse("is empty")
    if any(ord(c) < 0x20 or c == "\x7f" for c in relative) or "\\" in relative:
        raise refuse("contains control characters or a backslash")
    if relative.startswith("/"):
        raise refuse("is absolute")
    split = urlsplit(relative)
    if split.scheme or split.netloc or relative.startswith("//"):
        raise refuse("is a URL, not a path relative to the manifest")
    segments = relative.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise refuse("has an empty, '.' or '..' segment")
    directory = parts.path[: parts.path.rfind("/") + 1] or "/"
    path = directory + "/".join(quote(segment, safe="") for segment in segments)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def signature_url(url: str) -> str:
    """The URL of the minisign signature of `url`: the path plus ".minisig", query kept.

    "https://h/feed/manifest.json?key=k" -> "https://h/feed/manifest.json.minisig?key=k": the
    suffix belongs to the file name, not to the end of the query string.
    """
    parts = urlsplit(url)
    _check_scheme(parts.scheme, url)
    if not parts.path or parts.path.endswith("/"):
        raise FetchError(
            "the URL names a directory, not a file, so it has no signature file",
            hint="set the feed URL to the manifest (or list) file itself",
            where=_redact(url),
            reason="bad-url",
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path + ".minisig", parts.query, ""))


# --- the total deadline ---------------------------------------------------------------------------


class _Deadline:
    """Ends a whole download at a wall-clock deadline, whatever the server does.

    Every socket opened by the calling thread while the deadline is active is registered (see
    `_WatchedHTTPConnection`) as a duplicate file descriptor. At the deadline a timer thread calls
    shutdown() on those duplicates: shutdown acts on the connection, not on one descriptor, so the
    blocked recv() in the calling thread returns at once (and urllib3's connection objects are
    never touched from another thread). The caller then sees an error or an early end of data and
    checks `expired`.
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    @classmethod
    def register(cls, sock: socket.socket) -> None:
        deadline: _Deadline | None = getattr(cls._current, "deadline", None)
        if deadline is not None:
            deadline._watch(sock)

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def __enter__(self) -> _Deadline:
        self._current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        self._current.deadline = None
        with self._lock:
            for dup in self._sockets:
                dup.close()
            self._sockets.clear()

    def _watch(self, sock: socket.socket) -> None:
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            if self.expired:
                _shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for dup in self._sockets:
                _shutdown(dup)


def _shutdown(sock: socket.socket) -> None:
    # OSError: already closed by the peer or by us, nothing left to interrupt.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, with its socket registered with the current `_Deadline`."""

    def _new_conn(self) -> socket.socket:
        # urllib3 1.26's stubs omit the (stable, 1.x and 2.x) _new_conn hook.
        sock: socket.socket = super()._new_conn()  # type: ignore[misc, unused-ignore]
        _Deadline.register(sock)
        return sock


class _WatchedHTTPSConnection(HTTPSConnection):
    """The TLS variant; the raw socket is registered before the handshake starts."""

    def _new_conn(self) -> socket.socket:
        # urllib3 1.26's stubs omit the (stable, 1.x and 2.x) _new_conn hook.
        sock: socket.socket = super()._new_conn()  # type: ignore[misc, unused-ignore]
        _Deadline.register(sock)
        return sock


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """A requests adapter whose connections (direct or through an HTTP proxy) are watched.

    `max_retries=0`: retries, backoff and mirrors are the caller's business, with its own log.
    `pool_classes_by_scheme` is an instance attribute of urllib3's PoolManager in 1.26 and 2.x.
    """

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        _watch_pools(manager)
        return manager


def _watch_pools(manager: Any) -> None:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    # SOCKS proxy managers use their own pools: they keep only the per-operation timeouts.
    if classes == {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}:
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# --- one request, its redirects and its body ------------------------------------------------------


class _Failure:
    """Builds the operator-facing FetchErrors of one request hop (the URL is in every one)."""

    def __init__(
        self, url: str, current: str, timeout: float, deadline: _Deadline, ca_file: str | None
    ) -> None:
        self.url = url
        self.current = current
        self.timeout = timeout
        self.deadline = deadline
        self.ca_file = ca_file

    def error(self, what: str, hint: str, reason: str) -> FetchError:
        if self.current != self.url:
            what += f" (redirected from {_redact(self.url)})"
        return FetchError(what, hint=hint, where=_redact(self.current), reason=reason)

    def timed_out(self) -> FetchError:
        return self.error(
            f"the download did not complete within {self.timeout:g} s",
            "the feed server or the network is too slow or stalled; check connectivity from "
            "this gateway, or raise this feed's timeout if the feed is large",
            "timeout",
        )

    def too_large(self, size: int | None, max_size: int) -> FetchError:
        told = f" (the server announces {size} bytes)" if size is not None else ""
        return self.error(
            f"the download is larger than this feed's max_size of {max_size} bytes{told}",
            "if the feed really grew, raise max_size for this feed; otherwise the server is "
            "sending something that is not the feed",
            "too-large",
        )

    def incomplete(self, detail: str) -> FetchError:
        return self.error(
            f"the download was cut short: {detail}",
            "the server or a proxy closed the connection early; it is retried automatically",
            "incomplete",
        )

    def http(self, status: int, phrase: str) -> FetchError:
        if status in (401, 403, 407):
            hint = (
                "the server refuses access: check the URL and whether the feed server "
                "restricts clients (address allowlist, credentials, proxy)"
            )
        elif status in (404, 410):
            hint = "check the feed URL (url / mirrors) and that the publisher still serves it there"
        elif status == 304:
            hint = "the server answered 'not modified' to a request that was not conditional: a "
            hint += "broken server or cache; tell the feed publisher"
        elif status >= 500:
            hint = (
                "the feed server has a problem; the download is retried automatically; tell the "
                "feed publisher if it lasts"
            )
        else:
            hint = "the server did not send the feed; check the feed URL and tell the publisher"
        return self.error(
            f"the server answered HTTP {status} {phrase}".rstrip(), hint, f"http-{status}"
        )

    def from_exception(self, exc: BaseException, *, body: bool = False) -> FetchError:
        """Map a requests/urllib3/socket error to a reason; the deadline wins over everything.

        `body`: the error happened while reading the body, where a broken connection means the
        data is incomplete rather than that the server could not be reached.
        """
        if self.deadline.expired or self.deadline.remaining() <= 0:
            return self.timed_out()
        chain = _exception_chain(exc)
        verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
        if verify is not None:
            detail = getattr(verify, "verify_message", None) or _last(chain)
            if self.ca_file is not None:
                hint = (
                    f"check that ca_file {self.ca_file} holds the CA that signed the feed "
                    "server's certificate, and that the certificate names this host"
                )
            else:
                hint = (
                    "if the feed server uses a private CA, set ca_file for this feed to that CA "
                    "certificate (PEM); otherwise its certificate is wrong (expired, wrong name) "
                    "or the connection is intercepted: tell the feed publisher"
                )
            return self.error(f"TLS certificate verification failed: {detail}", hint, "tls")
        if any(_is_timeout(e) for e in chain):
            return self.timed_out()
        if isinstance(exc, requests.exceptions.SSLError) or any(
            isinstance(e, ssl.SSLError) for e in chain
        ):
            return self.error(
                f"TLS failed: {_last(chain)}",
                "check that the URL's scheme and port are right (is the server really speaking "
                "https there?) and that the server's TLS setup is sane (ca_file for this feed if "
                "it uses a private CA)",
                "tls",
            )
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
            return self.error(
                f"the URL is not valid: {_last(chain)}",
                "fix the feed URL in the configuration",
                "bad-url",
            )
        if body:
            return self.incomplete(_last(chain))
        host = urlsplit(self.current).hostname or "?"
        if any(isinstance(e, socket.gaierror) for e in chain):
            return self.error(
                f"cannot resolve the feed server's name {host}",
                "check the host name in the feed URL and this gateway's DNS resolver",
                "connect",
            )
        if any(isinstance(e, ConnectionRefusedError) for e in chain):
            what = f"cannot connect to the feed server {host}: connection refused"
        elif isinstance(exc, requests.exceptions.ProxyError):
            what = f"the HTTP proxy failed: {_last(chain)}"
        else:
            what = f"cannot talk to the feed server {host}: {_last(chain)}"
        return self.error(
            what,
            "check that the server is up and reachable from this gateway (routing, firewall, "
            "proxy settings); the download is retried automatically",
            "connect",
        )


def _send(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    ca_file: str | None,
    deadline: _Deadline,
    failure: _Failure,
) -> requests.Response:
    """One GET without redirects, returning once the headers are in (the body is streamed)."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise failure.timed_out()
    try:
        return session.get(
            url,
            headers=headers,
            stream=True,
            allow_redirects=False,
            timeout=(remaining, remaining),
            verify=ca_file if ca_file is not None else True,
        )
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise failure.from_exception(exc) from exc


def _redirect_target(
    response: requests.Response, current: str, seen: set[str], failure: _Failure
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
            f"redirect to {_redact(target)}, which is not an http(s) URL",
            "the feed server is misconfigured or hostile; tell the feed publisher",
            "redirect-invalid",
        )
    if urlsplit(current).scheme.lower() == "https" and scheme == "http":
        raise failure.error(
            f"redirect from https to plain http ({_redact(target)}) refused",
            "a feed fetched over https is never downgraded to http; use the https URL of the "
            "feed, or tell the feed publisher their server redirects to http",
            "redirect-downgrade",
        )
    if target in seen:
        raise failure.error(
            f"redirect loop back to {_redact(target)}",
            "the feed server is misconfigured; tell the feed publisher",
            "redirect-loop",
        )
    seen.add(target)
    return target


def _read_body(
    response: requests.Response, max_size: int, deadline: _Deadline, failure: _Failure
) -> bytes:
    """Read the raw body in bounded steps, decode it, and stop at max_size + 1 bytes."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    decoder = _Decoder.for_encoding(encoding)
    if decoder is None:
        raise failure.error(
            f"the server sent the feed with Content-Encoding {encoding!r}, which is not supported",
            "only gzip is requested; the server or a proxy ignores Accept-Encoding: tell the "
            "feed publisher",
            "encoding",
        )
    length = _content_length(response)
    # The wire bytes are capped too, so endless compressed data that decodes to nothing ends.
    # Compression can inflate incompressible data by a few bytes per 16 KiB: leave room for that.
    raw_cap = max_size if decoder.identity else max_size + max_size // 100 + _CHUNK
    if length is not None and length > raw_cap:
        raise failure.too_large(length, max_size)
    parts: list[bytes] = []
    size = 0
    raw = 0
    try:
        while True:
            block = response.raw.read(min(_CHUNK, raw_cap + 1 - raw), decode_content=False)
            if not block:
                break
            raw += len(block)
            if raw > raw_cap:
                raise failure.too_large(None, max_size)
            for piece in decoder.feed(block):
                size += len(piece)
                if size > max_size:
                    raise failure.too_large(None, max_size)
                parts.append(piece)
        complete = decoder.finished()
    except FetchError:
        raise
    except zlib.error as exc:
        raise failure.error(
            f"the gzip data sent by the server is corrupt: {exc}",
            "the server or a proxy damaged the data; it is retried automatically",
            "encoding",
        ) from exc
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError, ValueError) as exc:
        raise failure.from_exception(exc, body=True) from exc
    # A deadline shutdown can look like a normal end of data (body delimited by the connection
    # close): never return such a truncated body.
    if deadline.expired:
        raise failure.timed_out()
    if length is not None and raw < length:
        raise failure.incomplete(f"{raw} of the {length} bytes announced were received")
    if not complete:
        raise failure.incomplete("the gzip data ends before its end marker")
    return b"".join(parts)


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        # "10, 10" (a duplicated header) is tolerated as urllib3 does when all values agree.
        values = {int(v) for v in value.split(",")}
    except ValueError:
        return None
    return values.pop() if len(values) == 1 and min(values) >= 0 else None


class _Decoder:
    """Content-Encoding decoding with bounded output per step (at most _CHUNK bytes at a time).

    A gzip bomb (1 MiB of gzip is 1 GiB of zeros) therefore costs at most max_size + _CHUNK of
    memory before the cap stops it. Several gzip members in a row are decoded like gzip(1) does;
    trailing garbage after a complete member is ignored, as urllib3 and browsers do.
    """

    def __init__(self, wbits: int | None) -> None:
        self.identity = wbits is None
        self._wbits = wbits or 0
        self._obj = zlib.decompressobj(self._wbits) if wbits is not None else None
        self._members = 0  # completed members: after one, garbage is tolerated
        self._fallback = wbits == zlib.MAX_WBITS  # "deflate" may be raw deflate in practice
        self._output = False

    @classmethod
    def for_encoding(cls, encoding: str) -> _Decoder | None:
        if encoding in ("", "identity"):
            return cls(None)
        if encoding in ("gzip", "x-gzip"):
            return cls(16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return cls(zlib.MAX_WBITS)
        return None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._obj is None:
            yield data
            return
        while data:
            if self._obj.eof:
                self._members += 1
                self._obj = zlib.decompressobj(self._wbits)
            try:
                out = self._obj.decompress(data, _CHUNK)
            except zlib.error:
                if self._members:
                    return  # trailing garbage after a complete member
                if self._fallback and not self._output:
                    self._fallback = False
                    self._wbits = -zlib.MAX_WBITS
                    self._obj = zlib.decompressobj(self._wbits)
                    continue
                raise
            if out:
                self._output = True
                yield out
            if self._obj.eof:
                data = self._obj.unused_data
            elif self._obj.unconsumed_tail:
                data = self._obj.unconsumed_tail
            elif len(out) == _CHUNK:
                data = b""
                # Output was cut at _CHUNK with all input consumed: drain what zlib holds.
                while True:
                    out = self._obj.decompress(b"", _CHUNK)
                    if out:
                        yield out
                    if len(out) < _CHUNK:
                        break
            else:
                data = b""

    def finished(self) -> bool:
        """True when the encoded stream reached its end (always true for identity)."""
        return self._obj is None or self._obj.eof or self._members > 0


# --- file:// --------------------------------------------------------------------------------------


def _read_file(url: str, max_size: int) -> Response:
    """A local feed (a USB key, an NFS mount, a test fixture) under the same size cap.

    Last-Modified is derived from the file's mtime so that callers record validators the same way
    for every scheme; no request is conditional here (a rewrite within the same second would look
    unchanged).
    """
    path = _file_path(url)

    def fail(what: str, hint: str, reason: str) -> FetchError:
        return FetchError(what, hint=hint, where=url, reason=reason)

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise fail(
            "the feed file does not exist",
            "check the file:// URL of this feed and that the file was copied there",
            "not-found",
        ) from exc
    except OSError as exc:
        raise fail(
            f"the feed file cannot be opened: {exc.strerror or exc}",
            "check the file's permissions for the agent's user",
            "io",
        ) from exc
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise fail(
            "the feed path is not a regular file (a directory, device or pipe)",
            "point the file:// URL at the feed file itself",
            "io",
        )
    with open(fd, "rb") as handle:
        try:
            if info.st_size > max_size:
                raise fail(
                    f"the feed file is {info.st_size} bytes, more than this feed's max_size of "
                    f"{max_size} bytes",
                    "if the feed really grew, raise max_size for this feed",
                    "too-large",
                )
            data = handle.read(max_size + 1)  # the file may have grown since fstat
        except OSError as exc:
            raise fail(
                f"the feed file cannot be read: {exc.strerror or exc}",
                "check the disk or mount that holds it",
                "io",
            ) from exc
    if len(data) > max_size:
        raise fail(
            f"the feed file is larger than this feed's max_size of {max_size} bytes",
            "if the feed really grew, raise max_size for this feed",
            "too-large",
        )
    last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
    return Response(url=url, status=200, data=data, etag=None, last_modified=last_modified)


def _file_path(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path)
    problem = ""
    if parts.netloc not in ("", "localhost"):
        problem = f"names another host ({parts.netloc}); only local files can be read"
    elif parts.query:
        problem = "has a query string"
    elif not path.startswith("/"):
        problem = "is not an absolute path (write file:///absolute/path)"
    elif "\0" in path:
        problem = "contains a NUL character"
    if problem:
        raise FetchError(
            f"the file URL {problem}",
            hint="fix the feed URL in the configuration",
            where=url,
            reason="bad-url",
        )
    return path


# --- helpers --------------------------------------------------------------------------------------


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    _check_scheme(scheme, url)
    return scheme


def _check_scheme(scheme: str, url: str) -> None:
    if scheme.lower() not in SCHEMES:
        raise FetchError(
            f"unsupported URL scheme {scheme + ':' if scheme else '(none)'}",
            hint="feed URLs must start with https://, http:// or file://",
            where=_redact(url),
            reason="unsupported-scheme",
        )


def _redact(url: str) -> str:
    """The URL for messages and logs, without a password ("https://user:***@host/...")."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return url


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """exc and everything it wraps: requests and urllib3 nest the real cause in args/reason."""
    chain: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is known for known in chain):
            continue
        chain.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in current.args if isinstance(arg, BaseException)]
        todo += [e for e in linked if isinstance(e, BaseException)]
    return chain


def _is_timeout(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (refused, no route, DNS) subclasses ConnectTimeoutError for
    # historical reasons: it is a connection failure, not a timeout.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError)


def _last(chain: list[BaseException]) -> str:
    """The innermost message of an error chain: the one that names the actual problem."""
    for exc in reversed(chain):
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        text = str(exc)
        if text:
            return text
    return type(chain[0]).__name__
