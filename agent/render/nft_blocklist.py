"""Render the agent's nftables table (docs/design.md §6) as text for one `nft -f` transaction.

One table, `inet <firewall.table>`, owned entirely by the agent. The full script starts with
`table X` / `delete table X`, so loading it replaces the table atomically (one kernel
transaction: there is never a moment without the table) and touches nothing else on the host.

Layout: single addresses in hash sets (`v4`, `v6`), prefixes in interval sets (`v4_nets`,
`v6_nets`, already aggregated by the merge), no exemption for management hosts (the `mgmt_*`
sets serve the isolation chains only), one named counter per set, a rate-limited log with a
fixed prefix, and dynamic `offenders_*` sets that remember which internal hosts tried to reach a
blocked destination (likely infected machines).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from agent.config import FirewallConfig
from agent.errors import ConfigError
from agent.isolation.model import IsolationState
from agent.merge import Blocklist
from agent.plan import Plan
from agent.render.common import BLOCK_SETS, FAMILIES, checked, hash_room, management
from agent.render.nft_isolation import iso_chains, iso_declarations, iso_elements

CHUNK = 4096  # elements per `add element` statement: keeps lines short for nft's parser
_SAFE_PREFIX = re.compile(r"[A-Za-z0-9 _:.\-]{0,60}")


def _elements(table: str, set_name: str, values: Sequence[str], verb: str = "add"
              ) -> Iterable[str]:
    for i in range(0, len(values), CHUNK):
        body = ", ".join(values[i:i + CHUNK])
        yield f"{verb} element inet {table} {set_name} {{ {body} }}\n"


def render_elements(fw: FirewallConfig, set_name: str, values: Iterable[str],
                    verb: str = "add") -> str:
    """`add element` (or `delete element`) statements for one set, values re-checked: the
    parts of enforced.nft that hold the big sets (agent/backends/nft_boot.py)."""
    return "".join(_elements(fw.table, set_name, checked(values, "address"), verb))


def _log_prefix(fw: FirewallConfig, what: str) -> str:
    prefix = f"{fw.log_prefix}{what} "
    if not _SAFE_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"firewall.log_prefix {fw.log_prefix!r} has characters nft logs cannot carry",
            hint="use letters, digits, spaces, '_', ':', '.', '-' (at most 50 characters)",
        )
    return prefix


def rooms_for(blocklist: Blocklist, rooms: Mapping[str, int] | None = None) -> dict[str, int]:
    """The declared size of each hash set: the one in `rooms` (the kernel's; 0: none), else
    room for the blocklist's elements (common.hash_room)."""
    counts = blocklist.counts()
    return {name: rooms[name] if rooms and name in rooms else hash_room(counts[name])
            for name, _, interval, _ in BLOCK_SETS if not interval}


def render_table(fw: FirewallConfig, blocklist: Blocklist,
                 isolation: IsolationState | None = None, now: int | None = None,
                 rooms: Mapping[str, int] | None = None) -> str:
    """The complete script: replaces the table with the sets, chains and all elements,
    including the isolation state (so a reload or the boot path keeps the gateway isolated).

    `now` (whole seconds) is required with `isolation`: element timeouts count from it.
    `rooms` gives the hash sets' declared sizes (the kernel's, for a boot file that must
    declare what the kernel holds; 0: none); a set it does not name gets room for the
    blocklist (common.hash_room).
    """
    t = fw.table
    if isolation is not None and now is None:
        raise ValueError("render_table: the isolation state needs `now`")
    mgmt = management(fw)
    timeout = f"{fw.offender_timeout}s"
    lines = [
        f"# blocklist-agent: table inet {t}, rendered from the merged blocklist.",
        "# Load with: nft -f THIS_FILE  (replaces only this table, atomically)",
        f"table inet {t}",
        f"delete table inet {t}",
        f"table inet {t} {{",
        '\tcomment "managed by blocklist-agent; changes are overwritten"',
    ]
    for name, _, _, _ in BLOCK_SETS:
        lines.append(f"\tcounter hit_{name} {{ }}")
    room = rooms_for(blocklist, rooms)
    for name, nft_type, interval, _ in BLOCK_SETS:
        flags = " flags interval;" if interval else f" size {room[name]};" if room[name] else ""
        lines.append(f"\tset {name} {{ type {nft_type};{flags} }}")
    for fam, nft_type, _ in FAMILIES:
        members = mgmt[fam]
        elements = f" elements = {{ {', '.join(members)} }}" if members else ""
        lines.append(f"\tset mgmt_{fam} {{ type {nft_type}; flags interval;{elements} }}")
        lines.append(
            f"\tset offenders_{fam} {{ type {nft_type}; size 65535; "
            f"flags dynamic, timeout; timeout {timeout}; counter; }}"
        )
    out_prefix = _log_prefix(fw, "drop")
    in_prefix = _log_prefix(fw, "drop-in")
    for fam, _, ip in FAMILIES:
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
    for name, _, _, _ in BLOCK_SETS:
        values = checked(getattr(blocklist, name), "address")
        parts.extend(_elements(t, name, values))
    if isolation is not None and now is not None:
        parts.extend(line + "\n" for line in iso_elements(fw, isolation, now))
    return "".join(parts)


def _base_chain(hook: str, *, outbound: bool, inbound: bool, offenders: bool) -> list[str]:
    lines = [
        f"\tchain {hook} {{",
        f"\t\ttype filter hook {hook} priority filter - 10; policy accept;",
    ]
    # no exemption for management hosts: admin workstations are what ransomware operators go
    # for, so they are blocked like any host (the guards still refuse to block management
    # networks as destinations); their exemption is from isolation only (nft_isolation)
    for name, _, _, ip in BLOCK_SETS:
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
    for name, _, interval, _ in BLOCK_SETS:
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
