"""The `feeds:` list: where each feed comes from, how it is signed, and how often it is fetched.

Nothing is fetched here: a feed server that is down must not stop the agent from starting with
its last good copy.
"""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit

from yaml.nodes import Node

from agent.config.keys import read_trusted_key
from agent.config.model import FEED_FORMATS, MIN_REFRESH, NAME_RE, SIGNATURES, FeedConfig
from agent.config.nodes import given, node_line
from agent.config.sources import check_source_url, read_source
from agent.config.values import ValueReader, pattern

_FEED_KEYS = tuple(f.name for f in fields(FeedConfig) if f.name != "line")
_NAME_RULE = pattern(NAME_RE, "use 1 to 63 lowercase letters, digits and '-', not starting with "
                     "'-' (it is used in file names and on the command line)")


def read_feeds(r: ValueReader, node: Node) -> tuple[FeedConfig, ...]:
    items = r.sequence(node, "feeds", "feeds (each starting with '- name:')")
    if items is None:
        return ()
    out: list[FeedConfig] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(items):
        feed = _feed(r, item, f"feeds[{index}]")
        if feed is None:
            continue
        if not feed.name:
            continue  # missing or invalid, reported already
        if feed.name in first_line:
            r.report(item, f"feeds[{index}].name", "duplicate feed name", feed.name,
                     hint=f"also used by the feed on line {first_line[feed.name]}; "
                     "each feed needs its own name (state and status are kept by name)")
        else:
            first_line[feed.name] = feed.line
        out.append(feed)
    return tuple(out)


def _feed(r: ValueReader, node: Node, path: str) -> FeedConfig | None:
    m = r.mapping(node, path, _FEED_KEYS, "a feed (name:, url:, …)")
    if m is None:
        return None
    for key, what in (("name", "a name made of a-z, 0-9 and '-'"),
                      ("url", "the address of the feed's manifest.json or list")):
        if key not in m:
            r.report(node, f"{path}.{key}", "missing", hint=f"every feed needs {what}")
    kw = r.settings(m, path, {
        "name": lambda n, p: r.checked(n, p, "not a valid feed name", _NAME_RULE),
        "refresh": lambda n, p: r.duration(n, p, minimum=MIN_REFRESH),
        "max_size": r.size,
        "format": lambda n, p: r.choice(n, p, FEED_FORMATS),
        "signature": lambda n, p: r.choice(n, p, SIGNATURES),
        "subdomains": r.boolean,
        "max_reject_ratio": lambda n, p: r.ratio(n, p, zero_ok=True),
        "timeout": lambda n, p: r.duration(n, p, minimum=1, maximum=3600),
        "ca_file": lambda n, p: r.trusted_file(n, p, optional=True),
        "max_age": lambda n, p: r.duration(n, p, minimum=MIN_REFRESH),
        "max_indicators": lambda n, p: r.integer(n, p, 1, 100_000_000),
        # as guards.min_prefix_*, for a trusted list whose entries are wider (Spamhaus DROPv6)
        "min_prefix_v4": lambda n, p: r.integer(n, p, 0, 32),
        "min_prefix_v6": lambda n, p: r.integer(n, p, 0, 128),
        "trusted_keys": lambda n, p: r.each(n, p, "minisign public keys",
                                            lambda item, at: read_trusted_key(r, item, at)),
    })
    source_kw, source = read_source(r, node, m, path, kw.get("signature"))
    kw |= source_kw
    # An invalid `signature:` was reported already: None skips the checks that depend on it.
    signature: str | None = kw["signature"] if "signature" in m else "minisign"
    if source not in ("signed", None):
        signature = "none"
    kw |= r.settings(m, path, {
        "url": lambda n, p: _feed_url(r, n, p, signature),
        "mirrors": lambda n, p: r.each(n, p, "URLs",
                                       lambda item, at: _feed_url(r, item, at, signature)),
    })
    # No `trusted_keys:` at all counts as none; an invalid list (None) was reported already.
    keys = kw["trusted_keys"] if "trusted_keys" in m else ()
    if source == "signed":
        _check_signature(r, node, m, path, signature, keys)
    elif source is not None:
        check_source_url(r, m, path, source, kw.get("url"))
    fmt = kw["format"] if "format" in m else "manifest"
    if "max_age" in m and (source not in ("signed", None) or fmt == "manifest"
                           or signature == "none"):
        r.report(m["max_age"], f"{path}.max_age", "only a signed single list has a max_age",
                 hint="a manifest carries its own 'expires' (set by the publisher); an unsigned "
                 "list or an API source has no signed time to measure its age by. Remove max_age")
    return given(FeedConfig, kw, name="", url="", line=node_line(node))


def _check_signature(r: ValueReader, node: Node, m: dict[str, Node], path: str,
                     signature: str | None, keys: tuple[str, ...] | None) -> None:
    if signature == "minisign" and keys == ():
        where = m.get("trusted_keys", node)
        r.report(where, f"{path}.trusted_keys", "a signed feed needs at least one key",
                 hint="add the publisher's minisign public key (the RW… line, or the path "
                 "of its .pub file), or write 'signature: none' for an unsigned feed "
                 "over https")
    elif signature == "none" and keys:
        r.report(m["trusted_keys"], f"{path}.trusted_keys",
                 "keys are given but 'signature: none' turns verification off",
                 hint="remove 'signature: none' to verify this feed, or remove the keys")


def _feed_url(r: ValueReader, node: Node, path: str, signature: str | None) -> str | None:
    """https://, file:// (absolute path) or, for signed feeds only, http://."""
    url = r.text(node, path)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        r.report(node, path, f"not a valid URL: {exc}", url)
        return None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            r.report(node, path, "no host name in the URL", url,
                     hint="write https://host.example/path/manifest.json")
            return None
        if port == 0:
            r.report(node, path, "port 0 in the URL", url)
            return None
        if " " in url:
            r.report(node, path, "spaces in the URL", url, hint="write them as %20")
            return None
        if scheme == "http" and signature == "none":
            r.report(node, path, "unsigned feeds require https", url,
                     hint="over plain http anyone on the path can change the list; use "
                     "https://, or a signed feed (signature: minisign)")
            return None
        return url
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            r.report(node, path, "a file:// URL needs an absolute path", url,
                     hint="write file:///srv/feeds/example/manifest.json (three slashes)")
            return None
        return url
    if not parts.scheme:
        hint = "start the URL with https:// (or file:/// for a local directory)"
    else:
        hint = "use https://, file:// or, for signed feeds only, http://"
    r.report(node, path, "unsupported URL scheme", url, hint=hint)
    return None
