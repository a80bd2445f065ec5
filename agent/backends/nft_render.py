"""Render the agent's nftables table (design section 6) as text for one `nft -f` transaction.

One table, `inet <firewall.table>`, owned entirely by the agent. The full script starts with
`table X` / `delete table X`, so loading it replaces the table atomically (one kernel
transaction: there is never a moment without the table) and touches nothing else on the host.

Layout: single addresses in hash sets (`v4`, `v6`), prefixes in interval sets (`v4_nets`,
`v6_nets`, already aggregated by the merge), management networks never blocked, one named
counter per set, a rate-limited log with a fixed prefix, and dynamic `offenders_*` sets that
remember which internal hosts tried to reach a blocked destination (likely infected machines).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence

from agent.backends import checked
from agent.backends.nft_isolation import iso_chains, iso_declarations, iso_elements
from agent.config import FirewallConfig
from agent.errors import ConfigError
from agent.isolation import IsolationState
from agent.merge import Blocklist
from agent.plan import Plan

CHUNK = 4096  # elements per `add element` statement: keeps lines short for nft's parser

SETS = (  # (set, nft type, interval?, ip keyword)
    ("v4", "ipv4_addr", False, "ip"),
    ("v4_nets", "ipv4_addr", True, "ip"),
    ("v6", "ipv6_addr", False, "ip6"),
    ("v6_nets", "ipv6_addr", True, "ip6"),
)
_SAFE_PREFIX = re.compile(r"[A-Za-z0-9 _:.\-]{0,60}")


def _elements(table: str, set_name: str, values: Sequence[str], verb: str = "add"
              ) -> Iterable[str]:
    for i in range(0, len(values), CHUNK):
        body = ", ".join(values[i:i + CHUNK])
        yield f"{verb} element inet {table} {set_name} {{ {body} }}\n"


def _log_prefix(fw: FirewallConfig, what: str) -> str:
    prefix = f"{fw.log_prefix}{what} "
    if not _SAFE_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"firewall.log_prefix {fw.log_prefix!r} has characters nft logs cannot carry",
            hint="use letters, digits, spaces, '_', ':', '.', '-' (at most 50 characters)",
        )
    return prefix


def _split_management(management: Iterable[str]) -> tuple[list[str], list[str]]:
    v4 = [m for m in management if ":" not in m]
    v6 = [m for m in management if ":" in m]
    return checked(v4, "address"), checked(v6, "address")


def mgmt_elements(fw: FirewallConfig, fam: str) -> list[str]:
    v4, v6 = _split_management(fw.management)
    members = v4 if fam == "v4" else v6
    return [f"add element inet {fw.table} mgmt_{fam} {{ {', '.join(members)} }}"] if members else []


def render_table(fw: FirewallConfig, blocklist: Blocklist,
                 isolation: IsolationState | None = None, now: int | None = None) -> str:
    """The complete script: replaces the table with the sets, chains and all elements,
    including the isolation state (so a reload or the boot path keeps the gateway isolated)."""
    t = fw.table
    mgmt_v4, mgmt_v6 = _split_management(fw.management)
    timeout = f"{fw.offender_timeout}s"
    lines = [
        f"# blocklist-agent: table inet {t}, rendered from the merged blocklist.",
        "# Load with: nft -f THIS_FILE  (replaces only this table, atomically)",
        f"table inet {t}",
        f"delete table inet {t}",
        f"table inet {t} {{",
        '\tcomment "managed by blocklist-agent; changes are overwritten"',
    ]
    for name, _, _, _ in SETS:
        lines.append(f"\tcounter hit_{name} {{ }}")
    for name, nft_type, interval, _ in SETS:
        flags = " flags interval;" if interval else ""
        lines.append(f"\tset {name} {{ type {nft_type};{flags} }}")
    for fam, nft_type, members in (("v4", "ipv4_addr", mgmt_v4), ("v6", "ipv6_addr", mgmt_v6)):
        elements = f" elements = {{ {', '.join(members)} }}" if members else ""
        lines.append(f"\tset mgmt_{fam} {{ type {nft_type}; flags interval;{elements} }}")
        lines.append(
            f"\tset offenders_{fam} {{ type {nft_type}; size 65535; "
            f"flags dynamic, timeout; timeout {timeout}; counter; }}"
        )
    out_prefix = _log_prefix(fw, "drop")
    in_prefix = _log_prefix(fw, "drop-in")
    for fam, ip in (("v4", "ip"), ("v6", "ip6")):
        lines += [
            f"\tchain blocked_out_{fam} {{",
            f"\t\tupdate @offenders_{fam} {{ {ip} saddr counter }}",
            f'\t\tlimit rate 10/minute burst 5 packets log prefix "{out_prefix}" level warn',
            "\t\tdrop",
            "\t}",
        ]
    lines += [
        "\tchain blocked {",
        f'\t\tlimit rate 10/minute burst 5 packets log prefix "{out_prefix}" level warn',
        "\t\tdrop",
        "\t}",
        "\tchain blocked_in {",
        f'\t\tlimit rate 10/minute burst 5 packets log prefix "{in_prefix}" level warn',
        "\t\tdrop",
        "\t}",
    ]
    lines += iso_declarations()
    lines += iso_chains(fw)
    lines += _base_chain("forward", outbound=True, inbound=True, offenders=True)
    lines += _base_chain("output", outbound=True, inbound=False, offenders=False)
    lines += _base_chain("input", outbound=False, inbound=True, offenders=False)
    lines.append("}")
    text = "\n".join(lines) + "\n"
    parts = [text]
    for name, _, _, _ in SETS:
        values = checked(getattr(blocklist, name), "address")
        parts.extend(_elements(t, name, values))
    if isolation is not None:
        when = int(time.time()) if now is None else now
        parts.extend(line + "\n" for line in iso_elements(fw, isolation, when))
    return "".join(parts)


def _base_chain(hook: str, *, outbound: bool, inbound: bool, offenders: bool) -> list[str]:
    lines = [
        f"\tchain {hook} {{",
        f"\t\ttype filter hook {hook} priority filter - 10; policy accept;",
    ]
    for ip, fam in (("ip", "v4"), ("ip6", "v6")):
        lines.append(f"\t\t{ip} saddr @mgmt_{fam} accept")
        lines.append(f"\t\t{ip} daddr @mgmt_{fam} accept")
    for name, _, _, ip in SETS:
        fam = name[:2]
        if outbound:
            target = f"blocked_out_{fam}" if offenders else "blocked"
            lines.append(f"\t\t{ip} daddr @{name} counter name hit_{name} jump {target}")
        if inbound:
            lines.append(f"\t\t{ip} saddr @{name} counter name hit_{name} jump blocked_in")
    lines.append("\t}")
    return lines


def render_update(fw: FirewallConfig, plan: Plan, blocklist: Blocklist) -> str:
    """One transaction bringing the table from the last applied state to `blocklist`.

    Hash sets change by difference (cheap even at a million elements); a changed prefix set is
    flushed and refilled whole in the same transaction, because deleting from a large interval
    set takes minutes on nft 1.0.6 while refilling 10k prefixes takes 0.2 s.
    """
    t = fw.table
    parts = [f"# blocklist-agent: incremental update of table inet {t}\n"]
    for name, _, interval, _ in SETS:
        change = plan.changes[name]
        if not change.added and not change.removed:
            continue
        if interval:
            parts.append(f"flush set inet {t} {name}\n")
            parts.extend(_elements(t, name, checked(getattr(blocklist, name), "address")))
            continue
        parts.extend(_elements(t, name, checked(change.removed, "address"), "delete"))
        parts.extend(_elements(t, name, checked(change.added, "address")))
    return "".join(parts)
