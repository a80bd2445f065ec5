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
    if config.dns.backend != "none":
        raise ConfigError(
            f"dns.backend {config.dns.backend!r} is not available in this version",
            where=config.path, hint="set dns.backend: none, or use --render-to to get rpz.zone",
        )
    return out
