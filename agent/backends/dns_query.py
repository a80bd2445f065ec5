"""Asking the resolver over DNS (UDP, like a client would): where to ask, one query, and the
serial of the RPZ zone it serves; what a zone-file apply waits for and `status` reports."""

from __future__ import annotations

import socket

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from agent.backends.dns_client import Connect, split_server
from agent.config import Config


def resolver_address(config: Config) -> str | None:
    """Where `status` and `why` ask ("host" or "host:port"), None without a DNS backend."""
    if config.dns.backend == "none":
        return None
    return config.dns.resolver or config.dns.server or "127.0.0.1"


def zone_of(config: Config) -> str:
    """The RPZ zone's absolute name, as the resolver is asked for it (never raises)."""
    zone = config.dns.zone
    return zone if zone.endswith(".") else zone + "."


def ask(server: str, qname: str, rdtype: str, *, connect: Connect | None, timeout: float
        ) -> dns.message.Message | None:
    """One UDP query (recursion desired, like a client); None if no answer came in time."""
    host, port = split_server(server)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    query = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))
    sock = connect(family, socket.SOCK_DGRAM) if connect else socket.socket(family,
                                                                           socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        return dns.query.udp(query, host, port=port, timeout=timeout, sock=sock)
    except dns.exception.Timeout:
        return None
    finally:
        sock.close()


def ask_serial(config: Config, *, connect: Connect | None = None, timeout: float = 2.0
               ) -> tuple[int | None, str | None]:
    """(serial the resolver serves, None) or (None, why it cannot be known)."""
    server = resolver_address(config)
    if server is None:
        return None, "dns.backend is none"
    if config.dns.backend == "knot-resolver":
        return None, "Knot Resolver does not serve its RPZ zone over DNS"
    zone = dns.name.from_text(zone_of(config))
    try:
        reply = ask(server, zone_of(config), "SOA", connect=connect, timeout=timeout)
    except (OSError, dns.exception.DNSException) as exc:
        return None, f"cannot ask {server}: {exc}"
    if reply is None:
        return None, f"no answer from {server} within {timeout:g} s"
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == zone:
            return int(rrset[0].serial), None
    return None, (f"{server} does not serve the zone (SOA query: "
                  f"{dns.rcode.to_text(reply.rcode())}); for Unbound set for-downstream: yes "
                  "in its rpz: clause (config/resolvers/unbound.conf)")
