"""The `firewall:` section: the nftables table, the interfaces on each side and what is never cut.

Every value here ends up in an nft script, so each is checked by the rule the renderer applies
(interface names by `agent.util.ifname`): a file that loads is a file that can be applied.
"""

from __future__ import annotations

import re

from yaml.nodes import Node

from agent.config.model import FIREWALL_BACKENDS, FirewallConfig
from agent.config.nodes import given
from agent.config.values import ValueReader, pattern
from agent.util.ifname import ifname_problem

_TABLE_RULE = pattern(re.compile(r"[A-Za-z0-9_]{1,64}"), "use letters, digits and '_' only")
# What the nft renderer accepts in a log prefix (it appends a word such as "drop-in "): checked
# here too, so that a bad prefix stops the file from loading instead of failing at apply time.
_LOG_PREFIX_RE = re.compile(r"[A-Za-z0-9 _:.\-]{0,50}")


def read_firewall(r: ValueReader, node: Node) -> FirewallConfig | None:
    m = r.section(node, "firewall", FirewallConfig)
    if m is None:
        return None

    def interfaces(n: Node, p: str) -> tuple[str, ...] | None:
        return r.each(n, p, "interface names", lambda item, at: r.checked(
            item, at, "not a valid network interface name", ifname_problem))

    kw = r.settings(m, "firewall", {
        "backend": lambda n, p: r.choice(n, p, FIREWALL_BACKENDS),
        "table": lambda n, p: r.checked(n, p, "not a valid nftables table name", _TABLE_RULE),
        "lan_interfaces": interfaces,
        "wan_interfaces": interfaces,
    })
    both = set(kw.get("lan_interfaces") or ()) & set(kw.get("wan_interfaces") or ())
    if both:
        r.report(m["wan_interfaces"], "firewall.wan_interfaces",
                 "interface listed as both LAN and WAN", ", ".join(sorted(both)),
                 hint="isolation cuts the WAN side only; list each interface once")
    kw |= r.settings(m, "firewall", {
        "management": lambda n, p: r.each(n, p, "networks", r.address),
        "offender_timeout": lambda n, p: r.duration(n, p, minimum=1),
        "log_prefix": lambda n, p: _log_prefix(r, n, p),
    })
    return given(FirewallConfig, kw)


def _log_prefix(r: ValueReader, node: Node, path: str) -> str | None:
    # Not text(): a trailing space is wanted here ("blocklist-agent: " reads well in logs).
    value = r.verbatim(node, path)
    if value is None:
        return None
    if not _LOG_PREFIX_RE.fullmatch(value):
        r.report(node, path, "not usable as an nftables log prefix", value,
                 hint="at most 50 letters, digits, spaces, '_', ':', '.' or '-'")
        return None
    return value
