"""Backends by the names used in the config (`firewall.backend`, `dns.backend`)."""

from __future__ import annotations

from agent.backends.base import Backend
from agent.config import Config
from agent.errors import ConfigError


def backends_for(config: Config) -> list[Backend]:
    out: list[Backend] = []
    if config.firewall.backend == "nftables":
        from agent.backends.nftables import NftablesBackend

        out.append(NftablesBackend())
    dns_backend = dns_backend_for(config)
    if dns_backend is not None:
        out.append(dns_backend)
    return out


def dns_backend_for(config: Config) -> Backend | None:
    """The resolver backend named by `dns.backend` (None for `none`); imported on demand so a
    command that needs no DNS never pays for dnspython."""
    kind = config.dns.backend
    if kind == "none":
        return None
    if kind == "unbound":
        from agent.backends.dns_unbound import UnboundBackend

        return UnboundBackend.from_config(config)
    if kind == "bind":
        from agent.backends.dns_bind import BindBackend

        return BindBackend.from_config(config)
    if kind == "knot-resolver":
        from agent.backends.dns_knot import KnotResolverBackend

        return KnotResolverBackend.from_config(config)
    if kind == "dnsupdate":
        from agent.backends.dns_update import DnsUpdateBackend

        return DnsUpdateBackend.from_config(config)
    raise ConfigError(f"dns.backend {kind!r} is not one of unbound, bind, knot-resolver, "
                      "dnsupdate, none", where=config.path, hint="fix dns.backend")
