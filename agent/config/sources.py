"""The keys of a feed that subscribe to a sharing platform instead of a signed feed: `source`,
`auth_file`, `filters` (MISP) and `role` (block or allow).

A MISP or TAXII server signs nothing: what the agent receives is trusted because https proved the
server's name and the server checked the agent's credential. So these feeds are https only (a
file:// MISP feed directory excepted: it is local), take no keys and no signature setting, and
their credential file must be root's alone; check-config refuses the configuration otherwise,
before a daemon ever sends the key anywhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import Node

from agent.config.model import ROLES, SOURCES, MispFilters
from agent.config.nodes import given
from agent.config.values import ValueReader
from agent.util.credential import credential_problem, fix_hint

_FILTER_KEYS = tuple(MispFilters.__dataclass_fields__)
_NEEDS_AUTH = ("misp", "taxii")
_WHAT_URL = {
    "misp": "the MISP server's base URL (https://misp.example.org)",
    "misp-feed": "the feed directory, where its manifest.json is",
    "taxii": "the TAXII 2.1 collection URL (https://host/api-root/collections/ID/)",
}


def read_source(r: ValueReader, node: Node, m: dict[str, Node], path: str,
                signature: str | None) -> tuple[dict[str, Any], str | None]:
    """The source keys of one feed, and its source (None when `source:` itself is wrong).

    `signature` is the feed's `signature:` as read (None if not written or wrong).
    """
    kw = r.settings(m, path, {
        "source": lambda n, p: r.choice(n, p, SOURCES),
        "role": lambda n, p: r.choice(n, p, ROLES),
        "auth_file": lambda n, p: _auth_file(r, n, p),
    })
    source: str | None = kw["source"] if "source" in m else "signed"
    if "filters" in m:
        if source == "misp":
            kw["filters"] = _filters(r, m["filters"], f"{path}.filters")
        elif source is not None:
            r.report(m["filters"], f"{path}.filters", "filters are for 'source: misp' only",
                     hint="remove filters, or set source: misp")
    if source is None:
        return kw, None
    if source == "signed":
        if "auth_file" in m:
            r.report(m["auth_file"], f"{path}.auth_file",
                     "auth_file is for misp, misp-feed and taxii sources",
                     hint="a signed feed is trusted through its keys; remove auth_file")
        return kw, source
    if source in _NEEDS_AUTH and "auth_file" not in m:
        r.report(node, f"{path}.auth_file", "missing",
                 hint=f"a {source} source needs the path of a file holding its credential "
                 "(owned by root, mode 0600)")
    for key, why in (("trusted_keys", "its content is not signed"),
                     ("mirrors", "one server is asked"),
                     ("format", "the format is the API's own")):
        if key in m:
            r.report(m[key], f"{path}.{key}", f"not used with source: {source}",
                     hint=f"remove {key}: {why}")
    if signature == "minisign":
        r.report(m["signature"], f"{path}.signature", f"source: {source} is not signed",
                 hint="remove signature: the server is trusted through https and auth_file")
    kw["signature"] = "none"
    return kw, source


def check_source_url(r: ValueReader, m: dict[str, Node], path: str, source: str,
                     url: str | None) -> None:
    """https only, and file:// for a local MISP feed directory."""
    if url is None or source == "signed":
        return
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "file" and source == "misp-feed"):
        return
    r.report(m["url"], f"{path}.url", f"a {source} source must be fetched over https", url,
             hint=f"write {_WHAT_URL[source]}; an API key sent in clear text is a key given away")


def _auth_file(r: ValueReader, node: Node, path: str) -> str | None:
    value = r.file_path(node, path)
    if value is None:
        return None
    problem = credential_problem(value)
    if problem is not None:
        r.report(node, path, f"the credential file {problem}", value, hint=fix_hint(value))
        return None
    return value


def _filters(r: ValueReader, node: Node, path: str) -> MispFilters | None:
    m = r.mapping(node, path, _FILTER_KEYS, "MISP search filters (to_ids:, tags:, last:, …)")
    if m is None:
        return None
    return given(MispFilters, r.settings(m, path, {
        "to_ids": r.boolean,
        "published": r.boolean,
        "tags": lambda n, p: r.each(n, p, "MISP tag names", r.text),
        "last": lambda n, p: r.duration(n, p, minimum=60),
        "warninglists": r.boolean,
        "exclude_decayed": r.boolean,
        "limit": lambda n, p: r.integer(n, p, 1, 100_000),
    }))
