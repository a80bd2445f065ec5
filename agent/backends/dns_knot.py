"""`dns.backend: knot-resolver`: the zone file that `policy.rpz(..., true)` watches
(config/resolvers/kresd.conf); kresd reloads it by itself when the agent renames a new one in.

Knot Resolver 5.6 implements QNAME triggers only (names and `*.name`, NXDOMAIN, NODATA, DROP,
PASSTHRU, local A/AAAA); it does not implement `rpz-ip`, so IP indicators are left out of its
zone (kresd would read them as odd names) and are enforced by nftables alone.
"""

from __future__ import annotations

from agent.backends.dns_zonefile import CHECK_TIMEOUT, ZoneFileBackend, command_from_config
from agent.config import Config, DnsConfig
from agent.merge import Blocklist
from agent.render.rpz import render_zone


class KnotResolverBackend(ZoneFileBackend):
    name = "knot-resolver"

    @classmethod
    def from_config(cls, config: Config) -> KnotResolverBackend:
        # dns.control is not needed: kresd watches the file.
        return cls(check=command_from_config(config.dns.check, None, package="bind9-utils",
                                             timeout=CHECK_TIMEOUT))

    def render(self, dns: DnsConfig, blocklist: Blocklist, serial: int) -> str:
        names_only = blocklist._replace(v4=frozenset(), v4_nets=frozenset(), v6=frozenset(),
                                        v6_nets=frozenset(), allow_ips=frozenset())
        return render_zone(dns, names_only, serial)
