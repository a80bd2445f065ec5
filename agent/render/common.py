"""What every renderer shares: the re-check of every value before it is written, and the names
of the nftables table's sets that both nft renderers (blocklist and isolation) write into.

Renderers never trust their input: every value is re-checked against the character classes of
`agent.indicators` before it is written, so no name or address can inject a line into an nft
script or a zone file, whatever path it took to get here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent.config import FirewallConfig
from agent.errors import AgentError

_SAFE = {
    "name": re.compile(r"[a-z0-9_.\-\n]*"),
    "address": re.compile(r"[0-9a-f.:/\n]*"),
}
_LABEL_TOO_LONG = re.compile(r"[^.\n]{64}")

BLOCK_SETS = (  # (set, nft type, interval?, ip keyword): the blocklist's destinations
    ("v4", "ipv4_addr", False, "ip"),
    ("v4_nets", "ipv4_addr", True, "ip"),
    ("v6", "ipv6_addr", False, "ip6"),
    ("v6_nets", "ipv6_addr", True, "ip6"),
)
HASH_ROOM_MIN = 65536  # the least room a hash set is declared with


def hash_room(count: int) -> int:
    """The `size` a hash set (v4, v6) is declared with to hold `count` elements.

    A declared size makes the kernel build a hash of that size at once; without one it grows a
    resizable hash while the elements arrive, and a million-element load then spends more time
    in the kernel than the whole of nft's parsing (measured: 4.9 s against 3.2 s). The size is
    also a hard limit (the kernel refuses the element past it), so it leaves a quarter more
    room, rounded up to a power of two; a set that outgrows it is reloaded whole with more
    (agent.backends.nft_writer).
    """
    room = HASH_ROOM_MIN
    while room < count + count // 4:
        room *= 2
    return room


FAMILIES = (  # (suffix of mgmt_*, offenders_*, iso_allow_*, peer_*; nft type; ip keyword)
    ("v4", "ipv4_addr", "ip"),
    ("v6", "ipv6_addr", "ip6"),
)


def checked(values: Iterable[str], kind: str) -> list[str]:
    """The values as a list, after one C-speed scan proving they only hold safe characters.

    Not sorted: order means nothing to nft or a resolver, and sorting a million values twice
    per sync costs more than the whole check.
    """
    out = list(values)
    blob = "\n".join(out)
    bad = _SAFE[kind].fullmatch(blob) is None or "\n\n" in blob or blob.startswith("\n")
    if kind == "name" and not bad:
        bad = _LABEL_TOO_LONG.search(blob) is not None
    if bad:
        culprit = next(
            (v for v in out if not v or "\n" in v or not _SAFE[kind].fullmatch(v)
             or (kind == "name" and _LABEL_TOO_LONG.search(v))),
            "?",
        )
        raise AgentError(
            f"refusing to render an unsafe {kind}: {culprit[:80]!r}",
            hint="this is a bug in blocklist-agent's validation; please report it with the feed",
            reason="render",
        )
    return out


def management(fw: FirewallConfig) -> dict[str, list[str]]:
    """The management networks by family ("v4", "v6"), checked: never blocked, never cut."""
    v4 = [m for m in fw.management if ":" not in m]
    v6 = [m for m in fw.management if ":" in m]
    return {"v4": checked(v4, "address"), "v6": checked(v6, "address")}


def mgmt_elements(fw: FirewallConfig, fam: str) -> list[str]:
    """`add element` statement filling `mgmt_<fam>` (none when it has no members)."""
    members = management(fw)[fam]
    return [f"add element inet {fw.table} mgmt_{fam} {{ {', '.join(members)} }}"] if members else []
