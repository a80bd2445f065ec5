"""The `isolation:` section: what stays reachable while the kill switch cuts the WAN side
(allowed addresses and names, named partner networks, optionally the feed servers)."""

from __future__ import annotations

from yaml.nodes import Node

from agent.config.model import NAME_RE, IsolationConfig
from agent.config.nodes import given
from agent.config.values import ValueReader


def read_isolation(r: ValueReader, node: Node) -> IsolationConfig | None:
    m = r.section(node, "isolation", IsolationConfig)
    if m is None:
        return None
    return given(IsolationConfig, r.settings(m, "isolation", {
        "allow": lambda n, p: r.each(n, p, "addresses, networks and names", r.address_or_name),
        "allow_feeds": r.boolean,
        "peers": lambda n, p: _peers(r, n, p),
    }))


def _peers(r: ValueReader, node: Node,
           where: str) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    m = r.mapping(node, where, None, "a mapping of peer names to networks (name: [192.0.2.0/24])")
    if m is None:
        return None
    out: list[tuple[str, tuple[str, ...]]] = []
    ok = True
    for name, value in m.items():
        path = f"{where}.{name}"
        if not NAME_RE.fullmatch(name):
            r.report(value, path, "not a valid peer name", name,
                     hint="use lowercase letters, digits and '-' (it is typed after "
                     "--peer on the command line)")
            ok = False
            continue
        cidrs = r.each(value, path, "networks", r.address)
        if cidrs is None:
            ok = False
        elif not cidrs:
            r.report(value, path, "no network given",
                     hint="list the partner's networks: [203.0.113.0/24]")
            ok = False
        else:
            out.append((name, cidrs))
    return tuple(out) if ok else None
