"""`dns.backend: dnsupdate`: RFC 2136 dynamic updates signed with TSIG, sent to an authoritative
primary (BIND 9 or Knot DNS) that any number of resolvers follow by IXFR (docs/design.md §7).

This is the path for large lists. A zone-file reload makes Debian 12's Unbound deaf for 15-26 s
at a million names; an update carries only the difference (a 1 % change of a million names is
about 20,000 records in a dozen messages) and resolvers apply the IXFR without a pause.

How the difference is known. Incremental (the usual case): the records of the owners the plan
touches, before and after (agent.render.rpz.changed_records), so the cost follows the
change, not the list. That is only right if the primary holds exactly what the plan's baseline
says, so three things are recorded after each successful sync (`dns.json` in the state dir)
and checked before the next: the primary's SOA serial (anyone else's update, a primary rebuilt
empty or restored from backup changes it), an order-independent fingerprint of the blocklist
pushed (a sync recorded elsewhere but not here, e.g. another backend failed after this one)
and the settings that shape records (zone, server, action, ttl).

Full path (first sync, or any of those checks failing, or an update that failed part way):
transfer the zone from the primary (AXFR with the same TSIG key), compare it with the zone the
blocklist renders to, and send the difference as batched updates. Chosen over writing a zone
file and `rndc reload` on the primary because it needs nothing but the DNS protocol and the key
(the primary may be another host, BIND or Knot), it repairs whatever the primary holds (empty,
stale or edited by hand) with the smallest change, and it is the same code as the incremental
path. Its price, an AXFR parsed in Python (tens of seconds for a million records), is paid only
when something went wrong; a first load into an empty zone transfers nothing.

The primary increments the SOA serial itself on every update message; the agent reports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.serial
import dns.update

from agent.backends.base import ApplyContext, Backend
from agent.backends.dns_client import Connect, DnsClient, TsigKey, load_tsig_key
from agent.backends.dns_common import (
    fingerprint,
    fingerprint_after,
    fingerprint_before,
    holds_record,
    recorded_digest,
    save_state,
)
from agent.config import Config
from agent.errors import ConfigError
from agent.merge import Blocklist
from agent.plan import Plan
from agent.render.rpz import changed_records, zone_name, zone_records
from agent.util.gcpause import collector_paused

log = logging.getLogger(__name__)

WIRE_BUDGET = 65_000  # bytes of records per UPDATE; TCP messages end at 65,535 (64 KiB)
_RESERVED = 600  # header, zone section and the TSIG record


class Change(NamedTuple):
    """One owner's records: `old` is removed (the whole owner) if set, `new` added if set."""

    owner: str
    old: str | None
    new: str | None


def diff(before: Mapping[str, str], after: Mapping[str, str]) -> list[Change]:
    """Additions first, removals last: an update that breaks off half way has blocked more,
    never unblocked early."""
    out = [Change(owner, before.get(owner), rdata) for owner, rdata in after.items()
           if before.get(owner) != rdata]
    out += [Change(owner, rdata, None) for owner, rdata in before.items() if owner not in after]
    return out


def full_diff(current: Mapping[str, tuple[int, frozenset[str]]], desired: Mapping[str, str],
              ttl: int) -> list[Change]:
    """What turns the primary's zone (owner -> (ttl, {"CNAME ."})) into the desired one."""
    out = []
    for owner, rdata in desired.items():
        have = current.get(owner)
        if have is None:
            out.append(Change(owner, None, rdata))
        elif have != (ttl, frozenset((rdata,))):
            out.append(Change(owner, "*", rdata))
    out += [Change(owner, "*", None) for owner in current if owner not in desired]
    return out


def read_zone(client: DnsClient, zone: str) -> dict[str, tuple[int, frozenset[str]]]:
    """The primary's policy records by AXFR (the apex SOA and NS left out)."""
    origin = dns.name.from_text(zone)
    found: dict[str, tuple[int, set[str]]] = {}
    for rrset in client.axfr(zone):
        owner = rrset.name.relativize(origin)
        if owner == dns.name.empty:
            continue
        kind = dns.rdatatype.to_text(rrset.rdtype)
        texts = found.setdefault(owner.to_text().lower(), (rrset.ttl, set()))[1]
        texts.update(f"{kind} {rd.to_text(origin=origin, relativize=False)}" for rd in rrset)
    return {owner: (ttl, frozenset(texts)) for owner, (ttl, texts) in found.items()}


def batches(zone: str, ttl: int, changes: Iterable[Change]) -> Iterator[dns.update.UpdateMessage]:
    """UPDATE messages under 64 KiB on the wire; an owner's delete and add share a message
    (RFC 2136 applies a message in order and as a whole), so no owner is ever seen empty."""
    origin = dns.name.from_text(zone)
    budget = WIRE_BUDGET - len(zone) - _RESERVED
    rdatas: dict[str, dns.rdata.Rdata] = {}
    msg = dns.update.UpdateMessage(origin)
    size = 0
    for change in changes:
        name = dns.name.from_text(change.owner, origin)
        cost = 0
        if change.old is not None:
            cost += len(change.owner) + 13
        if change.new is not None:
            cost += len(change.owner) + 13 + len(change.new)
        if size and size + cost > budget:
            yield msg
            msg, size = dns.update.UpdateMessage(origin), 0
        size += cost
        if change.old is not None:
            msg.delete(name)
        if change.new is not None:
            rdata = rdatas.get(change.new)
            if rdata is None:  # a handful of distinct values: parse each once
                kind, _, text = change.new.partition(" ")
                rdata = rdatas[change.new] = dns.rdata.from_text(
                    dns.rdataclass.IN, dns.rdatatype.from_text(kind), text, dns.name.root,
                    relativize=False)  # "." is the root, not the zone's apex
            msg.add(name, ttl, rdata)
    if size:
        yield msg


class DnsUpdateBackend(Backend):
    name = "dnsupdate"

    def __init__(self, key: TsigKey, *, connect: Connect | None = None,
                 timeout: float = 30.0) -> None:
        self.key = key
        self.connect = connect
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Config, *, connect: Connect | None = None) -> DnsUpdateBackend:
        dns_cfg = config.dns
        if not dns_cfg.server or not dns_cfg.tsig_key_file:
            raise ConfigError("dns.backend dnsupdate needs dns.server and dns.tsig_key_file",
                              where=config.path, hint="see config/resolvers/bind-primary.conf")
        return cls(load_tsig_key(dns_cfg.tsig_key_file), connect=connect)

    @staticmethod
    def _settings(config: Config) -> dict[str, Any]:
        dns_cfg = config.dns
        return {"backend": DnsUpdateBackend.name, "zone": zone_name(dns_cfg),
                "server": dns_cfg.server, "action": dns_cfg.action, "ttl": dns_cfg.ttl}

    def unchanged(self, ctx: ApplyContext) -> str | None:
        """The primary serves the serial the agent left after giving it the applied record."""
        state = ctx.store.load_dns_record()
        dns_cfg = ctx.config.dns
        if not holds_record(state, self._settings(ctx.config), ctx.generation) or not (
                dns_cfg.server):
            return None
        try:
            with DnsClient(dns_cfg.server, key=self.key, connect=self.connect,
                           timeout=min(self.timeout, 5.0)) as client:
                served = client.soa_serial(zone_name(dns_cfg))
        except Exception as exc:  # unreachable, refused: let the apply find and report it
            log.debug("dnsupdate: cannot tell whether the primary holds the record: %s", exc)
            return None
        if served != state.get("serial"):
            return None
        return f"dnsupdate: unchanged, primary {dns_cfg.server} serial {served}"

    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        with collector_paused():
            return self._apply(plan, blocklist, ctx)

    def _apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        dns_cfg = ctx.config.dns
        assert dns_cfg.server is not None
        zone = zone_name(dns_cfg)
        settings = self._settings(ctx.config)
        state = ctx.store.load_dns_record()
        started = time.monotonic()
        # from the last update's fingerprint when that was the applied record's list (the cost
        # of the change), else over the whole list (which _why_full then compares)
        known = recorded_digest(state, ctx.generation)
        digest = (fingerprint(blocklist) if known is None or plan.first
                  else fingerprint_after(known, plan.changes))
        with DnsClient(dns_cfg.server, key=self.key, connect=self.connect,
                       timeout=self.timeout) as client:
            served = client.soa_serial(zone)
            why_full = self._why_full(plan, state, settings, served, digest)
            if why_full:
                log.info("dnsupdate: comparing the whole zone on %s: %s", dns_cfg.server,
                         why_full)
                changes = full_diff(read_zone(client, zone), zone_records(dns_cfg, blocklist),
                                    dns_cfg.ttl)
            else:
                changes = diff(*changed_records(dns_cfg, blocklist, plan.changes))
            messages = 0
            serial = served
            if changes:
                save_state(ctx.store, {**state, **settings, "in_sync": False})
                for msg in batches(zone, dns_cfg.ttl, changes):
                    client.update(msg)
                    messages += 1
                serial = client.soa_serial(zone)
            left = state.get("serial")
            if (isinstance(left, int) and state.get("zone") == zone
                    and state.get("server") == dns_cfg.server
                    and dns.serial.Serial(serial) < dns.serial.Serial(left)):
                serial = self._bump_serial(client, zone, left)
                messages += 1
        elapsed = time.monotonic() - started
        save_state(ctx.store, {
            **settings, "in_sync": True, "serial": serial, "fingerprint": digest,
            "generation": ctx.generation,
            "mode": "full" if why_full else "incremental", "full_reason": why_full,
            "changed_owners": len(changes), "messages": messages, "seconds": round(elapsed, 3),
        })
        how = f"full comparison ({why_full})" if why_full else "incremental"
        return (f"dnsupdate: {how}, {len(changes)} owners changed in {messages} messages, "
                f"primary {dns_cfg.server} serial {serial} ({elapsed:.1f} s)")

    @staticmethod
    def _bump_serial(client: DnsClient, zone: str, past: int) -> int:
        """Move the serial past `past`: a primary rebuilt or restored from a backup starts
        lower than what its followers hold, and a follower ignores a primary that seems older
        than its copy (RFC 1982), so it would never see the repaired zone."""
        soa = client.soa(zone)
        msg = dns.update.UpdateMessage(zone)
        msg.replace(soa.name, soa.ttl, soa[0].replace(serial=(past + 1) % 2**32))
        client.update(msg)
        serial = client.soa_serial(zone)
        log.warning("dnsupdate: the primary's serial went back from %d: moved it to %d so that "
                    "the resolvers following it transfer the zone again", past, serial)
        return serial

    @staticmethod
    def _why_full(plan: Plan, state: Mapping[str, Any], settings: Mapping[str, Any],
                  served: int, digest: str) -> str:
        """Why the primary cannot be trusted to hold the plan's baseline ('' if it can)."""
        if plan.first or not state:
            return "first sync"
        changed = [k for k, v in settings.items() if state.get(k) != v]
        if changed:
            return f"settings changed ({', '.join(changed)})"
        if state.get("in_sync") is not True:
            return "the previous update did not complete"
        if state.get("serial") != served:
            return (f"the primary's serial is {served}, the agent left it at "
                    f"{state.get('serial')}: the zone was changed or rebuilt elsewhere")
        if state.get("fingerprint") != fingerprint_before(digest, plan.changes):
            return "the primary holds another list than the last applied one"
        return ""
