"""The URLs of a feed: where a payload and a signature live relative to what was fetched, and
how a URL is shown in messages (never with its password)."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from agent.errors import FetchError, VerifyError
from agent.util.feedpath import payload_path_problem

SCHEMES = ("http", "https", "file")
MAX_REDIRECTS = 5  # followed by hand (agent.fetch.http), each hop under the same deadline


def join_url(base: str, relative: str) -> str:
    """The URL of a payload named `relative` in the manifest at `base` (http, https or file).

    `relative` comes from a signed manifest, but a signature only says who wrote it: a path that
    climbs out of the feed's directory ("../x", "/etc/passwd", "http://other/x") would let one
    publisher's manifest reach files or hosts it does not own, so it is refused as a malformed
    manifest, by the rule the manifest parser applies too (`agent.util.feedpath`). Each segment is
    percent-encoded (the path names a file, it is not a URL), so "%2e%2e" cannot become ".." on
    the server. The base's query is kept (access parameters of the feed, e.g. a token), its
    fragment dropped.
    """
    parts = urlsplit(base)
    _check_scheme(parts.scheme, base)
    problem = payload_path_problem(relative)
    if problem:
        raise VerifyError(
            f"payload path {relative!r} in the manifest {problem}",
            hint="payload paths must name a file in the manifest's own directory (no '..', no "
            "leading '/', no URL); the feed is refused: tell the feed publisher",
            where=redact(base),
            reason="malformed-manifest",
        )
    directory = parts.path[: parts.path.rfind("/") + 1] or "/"
    path = directory + "/".join(quote(segment, safe="") for segment in relative.split("/"))
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
            where=redact(url),
            reason="bad-url",
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path + ".minisig", parts.query, ""))


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    _check_scheme(scheme, url)
    return scheme


def _check_scheme(scheme: str, url: str) -> None:
    if scheme.lower() not in SCHEMES:
        raise FetchError(
            f"unsupported URL scheme {scheme + ':' if scheme else '(none)'}",
            hint="feed URLs must start with https://, http:// or file://",
            where=redact(url),
            reason="unsupported-scheme",
        )


def redact(url: str) -> str:
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
