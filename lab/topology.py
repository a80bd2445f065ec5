"""The lab's address plan, as data: the one place `Lab`, `python -m lab` and README.md agree on.

Every address here exists only inside namespaces the lab creates. The ranges are the ones kept for
documentation and tests (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24; RFC 3849:
2001:db8::/32) plus private 10.10.0.0/16 and ULA fd00:10::/32 for the hospital side, so that even a
probe that leaked out of a namespace by mistake could never reach a real site.

Interface names inside ns gw are the ones the agent's configuration names (`lan0`, `lan1`,
`mgmt0`, `wan0`, docs/design.md §4). Note the off-by-one: ns `lan1` hangs off gw's `lan0` and
ns `lan2` off gw's `lan1`, because the roles count hosts from 1 and the interfaces count from 0.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: tuple[str, ...] = ("gw", "lan1", "lan2", "mgmt", "wan")
"""Every namespace of a lab, by role. gw is first: it creates the veth pairs into the others."""

HTTP_PORT = 80
"""Every namespace answers HTTP "ok" here, on all its addresses."""

ECHO_PORT = 7007
"""Every namespace runs a TCP echo server here, on all its addresses (used by HeldConnection)."""


@dataclass(frozen=True)
class Link:
    """One veth pair between gw and another namespace, with both ends' addresses."""

    gw_if: str  # interface name inside ns gw (what the agent's config lists)
    peer: str  # role of the namespace at the other end
    peer_if: str  # interface name inside that namespace
    gw4: str  # gw's address on the link, with prefix length
    peer4: str
    gw6: str
    peer6: str


LINKS: tuple[Link, ...] = (
    Link("lan0", "lan1", "eth0", "10.10.1.1/24", "10.10.1.2/24",
         "fd00:10:1::1/64", "fd00:10:1::2/64"),
    Link("lan1", "lan2", "eth0", "10.10.2.1/24", "10.10.2.2/24",
         "fd00:10:2::1/64", "fd00:10:2::2/64"),
    Link("mgmt0", "mgmt", "eth0", "10.10.99.1/24", "10.10.99.2/24",
         "fd00:10:99::1/64", "fd00:10:99::2/64"),
    Link("wan0", "wan", "eth0", "198.51.100.1/24", "198.51.100.2/24",
         "2001:db8:100::1/64", "2001:db8:100::2/64"),
)

WAN_HOSTS_IF = "hosts0"
"""Dummy interface in ns wan carrying the named internet hosts below."""

WAN_HOSTS: dict[str, tuple[str, str]] = {
    # name: (IPv4, IPv6); each is "a host on the internet", served by ns wan
    "site": ("203.0.113.10", "2001:db8:200::10"),  # an ordinary site: must stay reachable
    "essential": ("203.0.113.20", "2001:db8:200::20"),  # kept during isolation (allowlist)
    "feed": ("203.0.113.30", "2001:db8:200::30"),  # where a feed server can run
    "dns": ("203.0.113.53", "2001:db8:200::53"),  # where an upstream DNS server can run
    "c2": ("203.0.113.66", "2001:db8:200::66"),  # a command-and-control server to block
    "peer": ("203.0.113.130", "2001:db8:200:80::130"),  # a host of the partner hospital
    "bad_prefix_host": ("192.0.2.7", "2001:db8:bad::7"),  # one host of a blocked prefix
}

WAN_ANYIP: tuple[str, ...] = ("203.0.113.0/24", "192.0.2.0/24", "2001:db8:200::/48",
                              "2001:db8:bad::/48")
"""Prefixes that ns wan answers for in full (local routes on lo, "AnyIP"): any address in them is
a live host, so a test of a prefix block can pick addresses nobody named."""

NETS: dict[str, str] = {
    "lan1": "10.10.1.0/24", "lan16": "fd00:10:1::/64",
    "lan2": "10.10.2.0/24", "lan26": "fd00:10:2::/64",
    "mgmt": "10.10.99.0/24", "mgmt6": "fd00:10:99::/64",
    "internal": "10.10.0.0/16", "internal6": "fd00:10::/32",
    "wan": "198.51.100.0/24", "wan6": "2001:db8:100::/64",
    "bad_prefix": "192.0.2.0/24", "bad_prefix6": "2001:db8:bad::/48",
    "peer": "203.0.113.128/25", "peer6": "2001:db8:200:80::/64",
    "internet": "203.0.113.0/24", "internet6": "2001:db8:200::/48",
}
"""Named prefixes: the config values later tests need (management, isolation peers, ...)."""

GW_IF: dict[str, str] = {link.peer: link.gw_if for link in LINKS}
"""Role of the far namespace -> gw's interface towards it: {"lan1": "lan0", "lan2": "lan1", ...}."""


def _host(cidr: str) -> str:
    return cidr.split("/", 1)[0]


def addresses() -> dict[str, str]:
    """Every named address; the IPv6 variant of a name is the name with "6" appended.

    Hosts: lan1, lan2, mgmt, wan (the wan router's link address) and the WAN_HOSTS; gw's own
    addresses are gw_<role> (gw_lan1, gw_lan2, gw_mgmt, gw_wan).
    """
    addr: dict[str, str] = {}
    for link in LINKS:
        addr[link.peer] = _host(link.peer4)
        addr[link.peer + "6"] = _host(link.peer6)
        addr["gw_" + link.peer] = _host(link.gw4)
        addr["gw_" + link.peer + "6"] = _host(link.gw6)
    for name, (v4, v6) in WAN_HOSTS.items():
        addr[name] = v4
        addr[name + "6"] = v6
    return addr
