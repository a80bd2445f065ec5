"""`dns.backend: bind`: the zone file of a BIND 9 `response-policy` zone, checked with
`named-checkzone`, loaded with `rndc reload ZONE` (config/resolvers/bind.conf).

BIND loads a zone in the background and swaps it in whole, so it keeps answering during the
reload; it is the zone-file backend for large lists.
"""

from __future__ import annotations

from agent.backends.dns_zonefile import CHECK_TIMEOUT, ZoneFileBackend, command_from_config
from agent.config import Config
from agent.errors import ApplyError
from agent.util.command import first_lines

_RELOADED = ("zone reload successful", "zone reload up-to-date", "zone reload queued")


class BindBackend(ZoneFileBackend):
    name = "bind"

    @classmethod
    def from_config(cls, config: Config) -> BindBackend:
        dns = config.dns
        return cls(control=command_from_config(dns.control, ["rndc"], package="bind9"),
                   check=command_from_config(dns.check, ["named-checkzone"],
                                             package="bind9-utils", timeout=CHECK_TIMEOUT))

    def reload(self, zone: str) -> None:
        assert self.control is not None
        out = self.control.run("reload", zone.rstrip("."))
        if not any(text in out for text in _RELOADED):
            raise ApplyError(f"`{self.control} reload {zone}` answered {first_lines(out)!r}",
                             hint="check the response-policy zone in named.conf "
                             "(config/resolvers/bind.conf) and named's log",
                             reason="dns-reload")
