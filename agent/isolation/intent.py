"""The kill switch's intent for the current configuration: what every rendering of the isolation
(isolate, restore, a full reload, a repair, break-glass.nft, the boot files) must carry.

The record (isolation.json) says who isolated and why; the current configuration says which
interfaces are the WAN and what stays open; the kernel says how much time is left and whether
someone isolated with plain nft (break-glass). `current` puts the three together, reading no
resolver (the allowlist's names come with their stored addresses); `drift` says why the kernel's
isolation sets differ from that intent, e.g. after `wan_interfaces` changed while isolated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from agent.config import Config
from agent.isolation import record
from agent.isolation.clock import Clock, read_clock
from agent.isolation.model import IsolationState, KernelFacts, Verdict, judge, with_allow
from agent.isolation.resolve import essentials
from agent.state import StateStore


class KernelSets(KernelFacts, Protocol):
    """KernelFacts and the addresses the kernel keeps open (`iso_allow_v4/_v6`)."""

    @property
    def allow(self) -> tuple[str, ...]: ...


def current(config: Config, store: StateStore, kernel: KernelFacts | None = None,
            clock: Clock | None = None) -> Verdict:
    """The record judged against the kernel and the boot's clock, with the essentials of the
    current configuration (stored addresses for names, no resolver asked)."""
    verdict = judge(record.load(store), clock or read_clock(), kernel)
    return verdict._replace(state=with_allow(verdict.state, essentials(config, store)))


def desired(config: Config, store: StateStore, kernel: KernelFacts | None = None,
            clock: Clock | None = None) -> IsolationState:
    """What the kernel's isolation sets must hold now (for TableWriter and the full reload)."""
    return current(config, store, kernel, clock).state


def _nets(values: Iterable[str]) -> set[str]:
    """Addresses, prefixes and nft ranges ("a-b") as one canonical set of prefixes."""
    import ipaddress  # here: a sync's check, kept off `isolate`'s path to the cut

    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for value in values:
        low, dash, high = value.partition("-")
        nets = (ipaddress.summarize_address_range(ipaddress.ip_address(low),
                                                  ipaddress.ip_address(high)) if dash
                else [ipaddress.ip_network(value, strict=False)])
        for net in nets:
            if isinstance(net, ipaddress.IPv4Network):
                v4.append(net)
            else:
                v6.append(net)
    return ({str(n) for n in ipaddress.collapse_addresses(v4)}
            | {str(n) for n in ipaddress.collapse_addresses(v6)})


def drift(config: Config, state: IsolationState, kernel: KernelSets | None) -> str | None:
    """Why the kernel's isolation sets differ from `state` (from `current`: deadlines applied)
    under the current configuration, or None (also when the kernel cannot be read or holds
    no table: that is a full reload's case)."""
    if kernel is None or not kernel.table_present:
        return None
    want = set(config.firewall.wan_interfaces) if state.active else set()
    if want != set(kernel.wan):
        return (f"iso_wan holds {', '.join(sorted(kernel.wan)) or 'nothing'}, the isolation "
                f"needs {', '.join(sorted(want)) or 'nothing'}")
    if _nets(state.allow) != _nets(kernel.allow):
        return "the essential services kept open changed (isolation.allow or its names)"
    prefixes = [c for p in state.peers for c in p.cidrs]
    if _nets(prefixes) != _nets(kernel.peers):
        return "the quarantined partner networks differ"
    return None

