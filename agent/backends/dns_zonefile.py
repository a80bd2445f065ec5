"""The zone-file backends' common apply: render the whole RPZ zone, install it safely, have the
resolver load it, record what it serves (docs/design.md §7).

The zone is rewritten whole, so the cost grows with the list, not with the change: fine for
tens of thousands of entries, but Debian 12's Unbound answers no query while it reloads a large
zone (15-26 s for a million names, bench/dns_apply.py), which is why big lists should take the
`dnsupdate` path. A sync that changes nothing does not rewrite or reload anything.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from agent.backends.base import ApplyContext, Backend
from agent.backends.dns_client import Connect
from agent.backends.dns_common import (
    Command,
    fingerprint,
    fingerprint_after,
    holds_record,
    install_zone,
    recorded_digest,
    save_state,
)
from agent.backends.dns_query import ask_serial, resolver_address
from agent.config import Config, DnsConfig
from agent.errors import ApplyError
from agent.merge import Blocklist
from agent.plan import Plan
from agent.render.rpz import render_zone, zone_name
from agent.util.command import CHECK_TIMEOUT, DEFAULT_TIMEOUT

__all__ = ["CHECK_TIMEOUT", "ZoneFileBackend", "command_from_config"]


def command_from_config(value: str | None, default: list[str] | None, *, package: str,
                        timeout: float = DEFAULT_TIMEOUT) -> Command | None:
    """`dns.control` / `dns.check` (a command prefix, split like a shell would) or a default."""
    words = shlex.split(value) if value else default
    return Command(words, package=package, timeout=timeout) if words else None


class ZoneFileBackend(Backend):
    """Render, check, swap in, reload. Subclasses say how their resolver reloads."""

    name = "zonefile"

    confirm_timeout = 60.0  # a million-name zone takes BIND a few seconds to load

    def __init__(self, control: Command | None = None, check: Command | None = None, *,
                 connect: Connect | None = None) -> None:
        self.control = control
        self.check = check
        self.connect = connect  # sockets for asking the resolver (tests: inside a netns)

    @classmethod
    def from_config(cls, config: Config) -> ZoneFileBackend:
        raise NotImplementedError

    def render(self, dns: DnsConfig, blocklist: Blocklist, serial: int) -> str:
        return render_zone(dns, blocklist, serial)

    def reload(self, zone: str) -> None:
        """Make the resolver load the zone file now (nothing: it watches the file)."""

    def confirm(self, config: Config, serial: int) -> str:
        """Wait until the resolver serves `serial` (an SOA query); raise if it keeps serving
        another one. A resolver that cannot be asked (no for-downstream, knot-resolver) is
        not a failure: the note says the load is unconfirmed."""
        deadline = time.monotonic() + self.confirm_timeout
        while True:
            served, error = ask_serial(config, connect=self.connect, timeout=1.0)
            if served == serial:
                return f"served by {resolver_address(config)}"
            if served is None:
                return f"not confirmed ({error})"
            if time.monotonic() > deadline:
                raise ApplyError(
                    f"the resolver {resolver_address(config)} still serves serial {served} of "
                    f"{config.dns.zone}, not the new {serial}, {self.confirm_timeout:.0f} s "
                    "after the reload", hint="see the resolver's log for why it did not load "
                    "the zone", reason="dns-not-loaded")
            time.sleep(0.1)

    def _settings(self, dns: DnsConfig) -> dict[str, Any]:
        return {"backend": self.name, "zone": zone_name(dns), "zonefile": dns.zonefile,
                "action": dns.action, "ttl": dns.ttl}

    def unchanged(self, ctx: ApplyContext) -> str | None:
        """The zone file holds the applied record and the resolver serves its serial."""
        dns = ctx.config.dns
        state = ctx.store.load_dns_record()
        if not holds_record(state, self._settings(dns), ctx.generation) or not Path(
                dns.zonefile).exists():
            return None
        served, _ = ask_serial(ctx.config, connect=self.connect, timeout=1.0)
        if served is None or served != state.get("serial"):
            return None
        return f"dns {self.name}: unchanged, zone {zone_name(dns)} serial {served}"

    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        dns = ctx.config.dns
        zone = zone_name(dns)
        path = Path(dns.zonefile)
        settings = self._settings(dns)
        previous = ctx.store.load_dns_record()
        # Compared with what the resolver was given, not with the plan: the plan's baseline is
        # what every backend applied, and this one may have gone further before another failed.
        known = recorded_digest(previous, ctx.generation)
        digest = (fingerprint(blocklist) if known is None
                  else fingerprint_after(known, plan.changes))
        if (path.exists() and previous.get("fingerprint") == digest
                and all(previous.get(k) == v for k, v in settings.items())):
            if previous.get("generation") != ctx.generation:  # the record moved on: follow it
                save_state(ctx.store, {**previous, "generation": ctx.generation})
            return f"dns {self.name}: unchanged, zone {zone} serial {previous.get('serial')}"
        started = time.monotonic()
        text = self.render(dns, blocklist, ctx.rpz_serial)
        confirmed: list[str] = []
        install_zone(path, text, zone=zone, serial=ctx.rpz_serial, check=self.check,
                     reload=lambda: self.reload(zone),
                     confirm=lambda: confirmed.append(self.confirm(ctx.config, ctx.rpz_serial)))
        elapsed = time.monotonic() - started
        save_state(ctx.store, {**settings, "serial": ctx.rpz_serial, "fingerprint": digest,
                               "generation": ctx.generation,
                               "records": text.count("\n") - 5, "seconds": round(elapsed, 3)})
        return (f"dns {self.name}: zone {zone} serial {ctx.rpz_serial} installed, "
                f"{confirmed[0]} ({text.count(chr(10)) - 5} records, {elapsed:.1f} s)")
