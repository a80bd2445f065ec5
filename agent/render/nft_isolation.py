"""Render the kill switch (docs/design.md §8) into the agent's nftables table.

The isolation chains are static and hooked before the blocklist's chains (priority filter - 20),
so they work whatever state the blocklist is in. What changes is set elements only:

- `iso_wan`: the WAN interfaces while the gateway is isolated (with the `--for` deadline as an
  element timeout: the kernel lifts isolation by itself, daemon or not);
- `iso_allow_v4/_v6`: essential services kept reachable (allowlist CIDRs, names resolved when
  isolation started);
- `peer_v4/_v6`: quarantined partner networks, cut in both directions.

`render_isolation_script` is idempotent (`add` creates what is missing, then the isolation
chains and sets are refilled) so the same text isolates a gateway whose table exists, whose
table is gone, or (as `break-glass.nft`) one where Python itself is broken.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from agent.config import FirewallConfig
from agent.errors import ConfigError
from agent.isolation.model import IsolationState
from agent.merge import aggregate
from agent.render.common import FAMILIES, checked, mgmt_elements
from agent.util.ifname import ifname_problem

ISO_SETS = (  # name, definition
    ("iso_wan", "type ifname; flags timeout;"),
    ("iso_allow_v4", "type ipv4_addr; flags interval;"),
    ("iso_allow_v6", "type ipv6_addr; flags interval;"),
    ("peer_v4", "type ipv4_addr; flags interval, timeout;"),
    ("peer_v6", "type ipv6_addr; flags interval, timeout;"),
)
HOOKS = ("forward", "output", "input")


def _ifname(name: str) -> str:
    """`name` quoted for nft; the rule is check-config's, so what it accepts renders."""
    problem = ifname_problem(name)
    if problem is not None:
        raise ConfigError(problem, hint="fix firewall.wan_interfaces")
    return f'"{name}"'


def iso_declarations() -> list[str]:
    """Sets and counters, as lines inside a `table { }` block."""
    lines = [f"\tset {name} {{ {definition} }}" for name, definition in ISO_SETS]
    lines += ["\tcounter iso_cut { }", "\tcounter peer_cut { }"]
    return lines


def mgmt_rules(hook: str) -> list[str]:
    """What management hosts keep through isolation and quarantines, exactly.

    A management *source* counts only on a packet that did not arrive through a WAN interface
    and whose source is routed back through the interface it came in on (strict reverse path,
    `fib saddr . iif oif exists`): a LAN host spoofing a management address fails it, with or
    without the kernel's rp_filter, and so does IPv6, which has none. From the WAN side only
    replies to what management hosts started come back (conntrack established/related); the
    gateway's own packets to management never leave through the WAN.
    """
    rules = []
    for fam, _, ip in FAMILIES:
        if hook == "output":
            rules.append(f"oifname != @iso_wan {ip} daddr @mgmt_{fam} return")
            continue
        rules.append(f"iifname != @iso_wan {ip} saddr @mgmt_{fam} fib saddr . iif oif exists "
                     "return")
        if hook == "forward":
            rules.append(f"{ip} daddr @mgmt_{fam} ct state established,related return")
    return rules


# IPv6 neighbour and router discovery on the WAN link itself (hop limit 255: never forwarded, so
# never from further away). Without it the upstream router forgets the gateway's link address
# within a minute of the cut and every IPv6 packet still allowed (replies to management, the
# essential services) stops; IPv4's ARP is not IP and never reaches these chains.
NDP = ("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
       "nd-router-advert } ip6 hoplimit 255 return")


def iso_rules(fw: FirewallConfig, hook: str) -> list[str]:
    """The rules of the isolation chain of `hook` (forward, output, input)."""
    prefix = f"{fw.log_prefix}isolated "
    rules = mgmt_rules(hook) + ([NDP] if hook != "forward" else [])
    for fam, _, ip in FAMILIES:
        rules += [f"{ip} daddr @peer_{fam} counter name peer_cut drop",
                  f"{ip} saddr @peer_{fam} counter name peer_cut drop"]
    for fam, _, ip in FAMILIES:
        rules += [f"oifname @iso_wan {ip} daddr @iso_allow_{fam} return",
                  f"iifname @iso_wan {ip} saddr @iso_allow_{fam} return"]
    rules += [
        f'oifname @iso_wan limit rate 10/minute burst 5 packets log prefix "{prefix}" '
        "level warn",
        "oifname @iso_wan counter name iso_cut drop",
        "iifname @iso_wan counter name iso_cut drop",
    ]
    return rules


def iso_chains(fw: FirewallConfig) -> list[str]:
    """The chains as lines inside a `table { }` block."""
    lines = []
    for hook in HOOKS:
        lines.append(f"\tchain iso_{hook} {{")
        lines.append(f"\t\ttype filter hook {hook} priority filter - 20; policy accept;")
        lines += [f"\t\t{rule}" for rule in iso_rules(fw, hook)]
        lines.append("\t}")
    return lines


def _timeout(deadline: int | None, now: int) -> str:
    return "" if deadline is None else f" timeout {max(deadline - now, 1)}s"


def iso_elements(fw: FirewallConfig, state: IsolationState, now: int) -> list[str]:
    """`add element` statements for the isolation sets (after they were flushed)."""
    t = fw.table
    live = state.live(now)
    out = []
    for fam, family in (("v4", socket.AF_INET), ("v6", socket.AF_INET6)):
        allow = [a for a in live.allow if (":" in a) == (fam == "v6")]
        if allow:
            values = checked(aggregate(allow, family), "address")
            out.append(f"add element inet {t} iso_allow_{fam} {{ {', '.join(values)} }}")
        peers = []
        for peer in live.peers:
            cidrs = [c for c in peer.cidrs if (":" in c) == (fam == "v6")]
            peers += [f"{c}{_timeout(peer.deadline, now)}"
                      for c in checked(aggregate(cidrs, family), "address")]
        if peers:
            out.append(f"add element inet {t} peer_{fam} {{ {', '.join(peers)} }}")
    if live.active:
        if not fw.wan_interfaces:
            raise ConfigError("isolation needs firewall.wan_interfaces: which interfaces lead "
                              "to the internet", hint="set firewall.wan_interfaces, e.g. [wan0]")
        wan = ", ".join(f"{_ifname(i)}{_timeout(live.deadline, now)}" for i in fw.wan_interfaces)
        out.append(f"add element inet {t} iso_wan {{ {wan} }}")
    return out


def render_isolation_script(fw: FirewallConfig, state: IsolationState, now: int,
                            header: Iterable[str] = ()) -> str:
    """One idempotent transaction that makes the table's isolation match `state`."""
    t = fw.table
    lines = list(header)
    lines.append(f"add table inet {t}")
    for fam, nft_type, _ in FAMILIES:
        lines.append(f"add set inet {t} mgmt_{fam} {{ type {nft_type}; flags interval; }}")
    for name, definition in ISO_SETS:
        lines.append(f"add set inet {t} {name} {{ {definition} }}")
    lines += [f"add counter inet {t} iso_cut", f"add counter inet {t} peer_cut"]
    for hook in HOOKS:
        lines.append(f"add chain inet {t} iso_{hook} {{ type filter hook {hook} priority "
                     "filter - 20; policy accept; }")
        lines.append(f"flush chain inet {t} iso_{hook}")
        lines += [f"add rule inet {t} iso_{hook} {rule}" for rule in iso_rules(fw, hook)]
    for fam, _, _ in FAMILIES:
        lines.append(f"flush set inet {t} mgmt_{fam}")
        lines += mgmt_elements(fw, fam)
    for name, _ in ISO_SETS:
        lines.append(f"flush set inet {t} {name}")
    lines += iso_elements(fw, state, now)
    return "\n".join(lines) + "\n"


def render_break_glass(fw: FirewallConfig, state: IsolationState, now: int) -> str:
    """`break-glass.nft`: isolate with plain nft when the agent itself cannot run."""
    header = [
        "# BREAK GLASS: cuts this gateway's internet (WAN) traffic with plain nft, for when",
        "# blocklist-agent itself cannot run. LAN-to-LAN traffic, the management networks and",
        "# the essential services of isolation.allow (as last resolved) stay open.",
        "#",
        "#   isolate:  nft -f THIS_FILE",
        f"#   undo:     nft flush set inet {fw.table} iso_wan",
        "#             (or, once the agent works again: blocklist-agent restore --reason ...)",
        "#",
        "# Regenerated by the agent at every sync, isolate and restore.",
    ]
    forced = IsolationState(active=True, since=now, by="break-glass", reason="break-glass",
                            allow=state.allow, peers=state.peers)
    return render_isolation_script(fw, forced, now, header)
