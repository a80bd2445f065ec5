"""Render the RPZ zone (docs/design.md §7) that resolvers load to stop blocked names resolving.

QNAME triggers for names (`name`, `name` + `*.name`, or `*.name` alone for a feed's wildcard-only
trigger), with the action the feed gave (`rpz-drop.`, `*.`) or `dns.action`; `rpz-ip` triggers
for blocked addresses and prefixes (so an answer pointing at a blocked address is rewritten even
under an unlisted name); and `rpz-passthru.` for local allows and a feed's exceptions under its
own wildcard, which RPZ ranks above the wildcard of a blocked parent.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import struct
from collections.abc import Iterable, Mapping

from agent.config import DnsConfig
from agent.errors import ConfigError
from agent.indicators import MAX_DNS_NAME, owner_octets
from agent.ledger import members
from agent.merge import Blocklist
from agent.plan import SetChange
from agent.render.common import checked

log = logging.getLogger(__name__)
PASSTHRU = "CNAME rpz-passthru."
DROP_RDATA = "CNAME rpz-drop."
NODATA_RDATA = "CNAME *."


def action_rdata(action: str) -> str:
    """The right-hand side of every blocking record for `dns.action`."""
    if action == "nxdomain":
        return "CNAME ."
    if action == "nodata":
        return NODATA_RDATA
    if action == "drop":
        return DROP_RDATA
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


_RPZ_SPECIAL = re.compile(r"(?:^|\.)rpz-[^.]*$")


def _plain_names(values: Iterable[str], longest: int) -> list[str]:
    """Checked names, without those whose last label is `rpz-*` or that the zone cannot hold.

    A name such as `8.0.0.0.10.rpz-ip` is a legal DNS name, but written into the zone it becomes
    an IP trigger (here: every answer pointing into 10.0.0.0/8), and `x.rpz-nsdname` a name
    server trigger. A feed must never be able to block by the back door what the guard rails
    refuse by the front one, so such names are dropped (with a warning), never rendered. So are
    names longer than `longest` characters, whose owner under the zone would pass 255 octets:
    one such record makes the resolver refuse the whole zone (the guards refuse them first,
    `name-too-long`; this is the last line, for values that did not pass them, local allows).
    """
    names = checked(values, "name")
    blob = "\n" + "\n".join(names)
    special = ".rpz-" in blob or "\nrpz-" in blob
    if not special and max(map(len, names), default=0) <= longest:
        return names
    kept = [n for n in names if len(n) <= longest and not (special and _RPZ_SPECIAL.search(n))]
    if len(kept) != len(names):
        dropped = sorted(set(names) - set(kept))
        log.warning("not rendering %d name(s) that would be RPZ special triggers or too long "
                    "for the zone, e.g. %s", len(dropped), dropped[0][:80])
    return kept


def zone_name(dns: DnsConfig) -> str:
    """The zone's absolute name, checked."""
    zone = dns.zone if dns.zone.endswith(".") else dns.zone + "."
    return checked([zone], "name")[0]


def longest_name(zone: str, *, wildcard: bool) -> int:
    """The longest name (characters) whose owner `[*.]name.zone.` the zone can hold."""
    return MAX_DNS_NAME - owner_octets("", zone, wildcard=wildcard)


def sections(dns: DnsConfig, blocklist: Blocklist) -> list[tuple[Iterable[str], str]]:
    """(owners, rdata) groups of the zone, owners relative to the zone, in rendering order.

    The one definition of which record a blocklist entry becomes: the zone file and the
    dynamic-update diff are both built from it, so they can never disagree. A blocked name is
    written with the action its feed gave it (`drop`, `nodata`), else with `dns.action`; the
    exceptions (local allows, a feed's own) come last, as `rpz-passthru.`.
    """
    default = action_rdata(dns.action)
    exact, wildcard = (longest_name(dns.zone, wildcard=False),
                       longest_name(dns.zone, wildcard=True))
    special = blocklist.drop | blocklist.nodata
    out: list[tuple[Iterable[str], str]] = []
    for group, rdata in ((None, default), (blocklist.drop, DROP_RDATA),
                         (blocklist.nodata, NODATA_RDATA)):
        def pick(values: frozenset[str], group: frozenset[str] | None = group) -> frozenset[str]:
            if group is None:
                return values - special if special else values
            return values & group
        names = _plain_names(pick(blocklist.names), exact)
        wild = _plain_names(pick(blocklist.wild), wildcard)
        below = _plain_names(pick(blocklist.below), wildcard)
        out += [(names, rdata), (wild, rdata), ((f"*.{n}" for n in wild), rdata),
                ((f"*.{n}" for n in below), rdata)]
    ips = checked(
        [*blocklist.v4, *blocklist.v4_nets, *blocklist.v6, *blocklist.v6_nets], "address"
    )
    allow_ips = checked(blocklist.allow_ips, "address")
    allow_names = _plain_names(blocklist.allow_names | blocklist.allow_wild | blocklist.pass_names,
                               exact)
    allow_wild = _plain_names(blocklist.allow_wild | blocklist.pass_below, wildcard)
    return [
        *out,
        ((rpz_ip_owner(v) for v in ips), default),
        (allow_names, PASSTHRU),
        ((f"*.{n}" for n in allow_wild), PASSTHRU),
        ((rpz_ip_owner(v) for v in allow_ips), PASSTHRU),
    ]


def zone_records(dns: DnsConfig, blocklist: Blocklist) -> dict[str, str]:
    """Every policy record of the zone: relative owner -> rdata ("CNAME ."), SOA/NS excluded."""
    out: dict[str, str] = {}
    for owners, rdata in sections(dns, blocklist):
        out.update(dict.fromkeys(owners, rdata))
    return out


def render_zone(dns: DnsConfig, blocklist: Blocklist, serial: int) -> str:
    """The zone text; owners are relative to $ORIGIN so the zone can be renamed in config."""
    zone = zone_name(dns)
    head = (
        f"; RPZ zone rendered by blocklist-agent; do not edit (it is overwritten)\n"
        f"$ORIGIN {zone}\n"
        f"$TTL {dns.ttl}\n"
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 604800 {dns.ttl}\n"
        f"@ NS localhost.\n"
    )
    parts = [head]
    for owners, rdata in sections(dns, blocklist):
        tail = f" {rdata}\n"
        parts.extend(owner + tail for owner in owners)
    return "".join(parts)


_DOMAIN_SETS = ("names", "wild", "allow_names", "allow_wild", "below", "pass_names",
                "pass_below", "drop", "nodata")
_IP_SETS = ("v4", "v4_nets", "v6", "v6_nets", "allow_ips")


def changed_records(dns: DnsConfig, blocklist: Blocklist, changes: Mapping[str, SetChange]
                    ) -> tuple[dict[str, str], dict[str, str]]:
    """(before, after) records of only the owners that a plan's changes touch.

    Cost follows the size of the change, not of the list: a value's records depend only on
    which sets hold that very value (a name is an owner in names, wild, below, the allow and
    exception sets alike, and drop/nodata choose its rdata; an address in v4 and allow_ips), so
    the sets before the change are
    rebuilt for the touched values alone, from `blocklist` and the per-set added/removed.
    """
    touched_names: set[str] = set()
    touched_ips: set[str] = set()
    for name, change in changes.items():
        target = touched_names if name in _DOMAIN_SETS else touched_ips
        target.update(change.added)
        target.update(change.removed)
    after: dict[str, frozenset[str]] = {}
    before: dict[str, frozenset[str]] = {}
    for name in (*_DOMAIN_SETS, *_IP_SETS):
        touched = touched_names if name in _DOMAIN_SETS else touched_ips
        step = changes.get(name)
        if step is None:
            now = members(blocklist, name, touched)
        else:  # what the step added is in the set, what it removed is not: ask the others
            unknown = [v for v in touched if v not in step.added and v not in step.removed]
            now = (step.added & touched) | members(blocklist, name, unknown)
        was = now if step is None else (now - step.added) | (step.removed & touched)
        after[name], before[name] = now, was
    return (zone_records(dns, Blocklist(**before)), zone_records(dns, Blocklist(**after)))
