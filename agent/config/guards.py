"""The `guards:` section: the limits that keep a bad or hostile feed from cutting the hospital
off (too-wide prefixes, sudden large changes, addresses and names that must stay reachable)."""

from __future__ import annotations

from yaml.nodes import Node

from agent.config.model import GuardConfig
from agent.config.nodes import given
from agent.config.values import ValueReader


def read_guards(r: ValueReader, node: Node) -> GuardConfig | None:
    m = r.section(node, "guards", GuardConfig)
    if m is None:
        return None
    return given(GuardConfig, r.settings(m, "guards", {
        "min_prefix_v4": lambda n, p: r.integer(n, p, 0, 32),
        "min_prefix_v6": lambda n, p: r.integer(n, p, 0, 128),
        "max_change": lambda n, p: r.ratio(n, p, zero_ok=False),
        "protected": lambda n, p: r.each(
            n, p, "addresses, networks and names",
            lambda item, at: r.address_or_name(item, at, wildcard=True)),
        "allow_special": lambda n, p: r.each(n, p, "networks", r.address),
        "max_address_share": lambda n, p: r.ratio(n, p, zero_ok=False),
        "lifeline_except": lambda n, p: r.each(
            n, p, "addresses, networks and names", r.address_or_name),
    }))
