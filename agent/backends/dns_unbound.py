"""`dns.backend: unbound`: the zone file of an `rpz:` clause, reloaded with
`unbound-control auth_zone_reload ZONE` (config/resolvers/unbound.conf).

Mind the size: Unbound 1.17 answers no query at all while it reloads the zone (15-26 s for a
million names, measured on Debian 12); above some tens of thousands of entries use the
`dnsupdate` path, which Unbound follows by IXFR without a pause.
"""

from __future__ import annotations

from agent.backends.dns_zonefile import CHECK_TIMEOUT, ZoneFileBackend, command_from_config
from agent.config import Config
from agent.errors import ApplyError
from agent.util.command import first_lines


class UnboundBackend(ZoneFileBackend):
    name = "unbound"

    @classmethod
    def from_config(cls, config: Config) -> UnboundBackend:
        dns = config.dns
        return cls(control=command_from_config(dns.control, ["unbound-control"],
                                               package="unbound"),
                   check=command_from_config(dns.check, None, package="bind9-utils",
                                             timeout=CHECK_TIMEOUT))

    def reload(self, zone: str) -> None:
        assert self.control is not None
        out = self.control.run("auth_zone_reload", zone)
        if out.strip() != "ok":
            raise ApplyError(
                f"`{self.control} auth_zone_reload {zone}` answered {first_lines(out)!r}",
                hint="check that the rpz: clause of unbound.conf names this zone and file "
                "(config/resolvers/unbound.conf)", reason="dns-reload")
