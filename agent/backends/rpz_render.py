"""Render the RPZ zone (design section 7) that resolvers load to stop blocked names resolving.

QNAME triggers for names (`*.name` too when the entry covers subdomains), `rpz-ip` triggers for
blocked addresses and prefixes (so an answer pointing at a blocked address is rewritten even
under an unlisted name), and `rpz-passthru.` for local allows, which RPZ ranks above the
wildcard of a blocked parent.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

from agent.backends import checked
from agent.config import DnsConfig
from agent.errors import ConfigError
from agent.merge import Blocklist

PASSTHRU = "CNAME rpz-passthru."


def action_rdata(action: str) -> str:
    """The right-hand side of every blocking record for `dns.action`."""
    if action == "nxdomain":
        return "CNAME ."
    if action == "nodata":
        return "CNAME *."
    if action == "drop":
        return "CNAME rpz-drop."
    if action.startswith("redirect:"):
        target = action.partition(":")[2]
        try:
            addr = ipaddress.ip_address(target)
        except ValueError:
            name = checked([target.lower().rstrip(".")], "name")[0]
            return f"CNAME {name}."
        return f"{'AAAA' if addr.version == 6 else 'A'} {addr}"
    raise ConfigError(
        f"dns.action {action!r} is not one of nxdomain, nodata, drop, redirect:<ip>",
        hint="fix dns.action in the configuration",
    )


def rpz_ip_owner(value: str) -> str:
    """"198.51.100.0/24" -> "24.0.100.51.198.rpz-ip"; IPv6 uses reversed groups and "zz".

    String work only (no ipaddress objects): this runs once per blocked address.
    """
    addr, slash, length = value.partition("/")
    if ":" not in addr:
        return f"{length if slash else 32}.{'.'.join(reversed(addr.split('.')))}.rpz-ip"
    groups = [f"{g:x}" for g in struct.unpack(">8H", socket.inet_pton(socket.AF_INET6, addr))]
    # replace the longest run (2 or more) of zero groups by "zz", where RFC 5952 puts "::"
    best_start, best_len, run_start = -1, 1, -1
    for i, group in enumerate([*groups, "end"]):
        if group == "0":
            if run_start < 0:
                run_start = i
        elif run_start >= 0:
            if i - run_start > best_len:
                best_start, best_len = run_start, i - run_start
            run_start = -1
    if best_start >= 0:
        groups[best_start:best_start + best_len] = ["zz"]
    return f"{length if slash else 128}.{'.'.join(reversed(groups))}.rpz-ip"


def _records(owners: Iterable[str], rdata: str) -> Iterable[str]:
    for owner in owners:
        yield f"{owner} {rdata}\n"


def render_zone(dns: DnsConfig, blocklist: Blocklist, serial: int) -> str:
    """The zone text; owners are relative to $ORIGIN so the zone can be renamed in config."""
    zone = dns.zone if dns.zone.endswith(".") else dns.zone + "."
    zone = checked([zone], "name")[0]
    rdata = action_rdata(dns.action)
    names = checked(blocklist.names, "name")
    wild = checked(blocklist.wild, "name")
    allow_names = checked(blocklist.allow_names | blocklist.allow_wild, "name")
    allow_wild = checked(blocklist.allow_wild, "name")
    ips = checked(
        [*blocklist.v4, *blocklist.v4_nets, *blocklist.v6, *blocklist.v6_nets], "address"
    )
    allow_ips = checked(blocklist.allow_ips, "address")
    head = (
        f"; RPZ zone rendered by blocklist-agent; do not edit (it is overwritten)\n"
        f"$ORIGIN {zone}\n"
        f"$TTL {dns.ttl}\n"
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 604800 {dns.ttl}\n"
        f"@ NS localhost.\n"
    )
    parts = [head]
    parts.extend(_records(names, rdata))
    parts.extend(_records(wild, rdata))
    parts.extend(_records((f"*.{n}" for n in wild), rdata))
    parts.extend(_records((rpz_ip_owner(v) for v in ips), rdata))
    parts.extend(_records(allow_names, PASSTHRU))
    parts.extend(_records((f"*.{n}" for n in allow_wild), PASSTHRU))
    parts.extend(_records((rpz_ip_owner(v) for v in allow_ips), PASSTHRU))
    return "".join(parts)
