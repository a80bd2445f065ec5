"""How a failed request hop is told to the operator: one `FetchError` with a stable reason code
and a hint, from whatever requests, urllib3, ssl or the socket raised (the deadline wins)."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import requests
import urllib3

from agent.errors import FetchError
from agent.fetch.deadline import Deadline
from agent.fetch.url import redact
from agent.util.escape import shown


class HopErrors:
    """Builds the operator-facing FetchErrors of one request hop (the URL is in every one)."""

    def __init__(
        self, url: str, current: str, timeout: float, deadline: Deadline, ca_file: str | None
    ) -> None:
        self.url = url
        self.current = current
        self.timeout = timeout
        self.deadline = deadline
        self.ca_file = ca_file

    def error(self, what: str, hint: str, reason: str) -> FetchError:
        if self.current != self.url:
            what += f" (redirected from {redact(self.url)})"
        return FetchError(what, hint=hint, where=redact(self.current), reason=reason)

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
            f"the server answered HTTP {status} {shown(phrase)}".rstrip(), hint, f"http-{status}"
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
