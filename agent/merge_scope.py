"""A feed's exceptions (`rpz-passthru.`) applied to that feed's own blocks, and to nothing else.

An RPZ zone such as Google's restricted.googleapis.com one blocks `*.googleapis.com` and
exempts `restricted.googleapis.com`. Inside that feed the exception wins as RPZ decides: an
exact trigger beats every wildcard, the longest wildcard beats a shorter one, the longest
`rpz-ip` prefix beats a shorter one. Across feeds it must not: another feed (or a local deny)
that blocks `restricted.googleapis.com` keeps it blocked. So each source is read on its own
here, its blocks carved by its own exceptions; an exception is rendered `rpz-passthru.` only
where it is still needed (under its own feed's wildcard) and harmless (no other source blocks
what it would exempt). Addresses need no rendering at all: the exception is carved out of that
feed's prefixes, for nftables and `rpz-ip` alike.

Only reached when some feed lists an exception (`merge` takes the one-pass path otherwise), so
the per-source sets it keeps cost nothing to a deployment without such feeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.indicators import DOMAIN, DROP, IPV4, IPV6, NODATA, PASSTHRU, Indicator
from agent.netrange import AF_INET, AF_INET6, bits, span, spans, subtract, to_cidrs, to_int
from agent.netrange import to_text as int_to_text

# When sources disagree on a blocked name's action, the stronger one wins.
ACTION_RANK = {DROP: 2, NODATA: 1}
_RANK = ACTION_RANK
_FAMILY = {IPV4: AF_INET, IPV6: AF_INET6}


@dataclass
class Blocks:
    """One source's blocks (or the union of several), one set per kind."""

    addrs: dict[str, set[str]] = field(default_factory=lambda: {IPV4: set(), IPV6: set()})
    nets: dict[str, set[str]] = field(default_factory=lambda: {IPV4: set(), IPV6: set()})
    names: set[str] = field(default_factory=set)  # the name alone
    wild: set[str] = field(default_factory=set)  # the name and below
    below: set[str] = field(default_factory=set)  # below only
    actions: dict[str, str] = field(default_factory=dict)  # name -> DROP | NODATA

    @classmethod
    def empty(cls) -> Blocks:
        return cls()

    def add(self, ind: Indicator) -> None:
        if ind.type != DOMAIN:
            target = self.nets if "/" in ind.value else self.addrs
            target[ind.type].add(ind.value)
            return
        if not ind.subdomains:
            self.names.add(ind.value)
        else:
            (self.below if ind.below else self.wild).add(ind.value)
        if _RANK.get(ind.action, 0) > _RANK.get(self.actions.get(ind.value, ""), 0):
            self.actions[ind.value] = ind.action

    def update(self, other: Blocks) -> None:
        for kind in (IPV4, IPV6):
            self.addrs[kind] |= other.addrs[kind]
            self.nets[kind] |= other.nets[kind]
        self.names |= other.names
        self.wild |= other.wild
        self.below |= other.below
        for name, action in other.actions.items():
            if _RANK[action] > _RANK.get(self.actions.get(name, ""), 0):
                self.actions[name] = action

    def blocks_name(self, name: str) -> bool:
        """Does this source block the name itself (exactly, or by a wildcard parent)?"""
        return (name in self.names or name in self.wild
                or _under(name, self.wild) or _under(name, self.below))

    def blocks_below(self, name: str) -> bool:
        """Does this source block the names below `name` with a wildcard at or above it?"""
        return (name in self.wild or name in self.below
                or _under(name, self.wild) or _under(name, self.below))


def scoped_blocks(sources: Sequence[Sequence[Indicator]]) -> tuple[Blocks, tuple[set[str],
                                                                                 set[str]]]:
    """(the union of every source's blocks, each carved by its own exceptions;
    (exact names, names below which) to render `rpz-passthru.`)."""
    per: list[tuple[Blocks, list[Indicator]]] = []
    for source in sources:
        own, exceptions = Blocks.empty(), []
        for ind in source:
            if ind.action == PASSTHRU:
                exceptions.append(ind)
            else:
                own.add(ind)
        if exceptions:
            _carve_names(own, exceptions)
            _carve_addresses(own, exceptions)
        per.append((own, exceptions))
    pass_names: set[str] = set()
    pass_below: set[str] = set()
    for index, (own, exceptions) in enumerate(per):
        others = [blocks for at, (blocks, _) in enumerate(per) if at != index]
        for ind in exceptions:
            if ind.type != DOMAIN or not (_under(ind.value, own.wild)
                                          or _under(ind.value, own.below)):
                continue  # an address (carved already), or nothing of its feed to exempt from
            name = ind.value
            if not ind.below and not any(b.blocks_name(name) for b in others):
                pass_names.add(name)
            if ind.subdomains and not any(b.blocks_below(name) for b in others):
                pass_below.add(name)
    total = Blocks.empty()
    for own, _ in per:
        total.update(own)
    return total, (pass_names, pass_below)


def covering_parent(name: str, group: set[str] | frozenset[str]) -> str | None:
    """The nearest strict parent of `name` in `group` (names blocked or exempted below), if any."""
    idx = name.find(".")
    while idx >= 0:
        parent = name[idx + 1:]
        if parent in group:
            return parent
        idx = name.find(".", idx + 1)
    return None


def _under(name: str, group: set[str]) -> bool:
    return bool(group) and covering_parent(name, group) is not None


def _carve_names(own: Blocks, exceptions: list[Indicator]) -> None:
    """A source's name blocks minus its exceptions for the very same owner (`x` exempts the
    name x of a `x` + `*.x` block, `*.x` its names below): RPZ has one policy per owner."""
    exact = {i.value for i in exceptions if i.type == DOMAIN and not i.below}
    below = {i.value for i in exceptions if i.type == DOMAIN and i.subdomains}
    own.names -= exact
    for name in own.wild & (exact | below):
        own.wild.discard(name)
        if name not in exact:
            own.names.add(name)
        if name not in below:
            own.below.add(name)
    own.below -= below


def _carve_addresses(own: Blocks, exceptions: list[Indicator]) -> None:
    """A source's addresses and prefixes minus its exceptions that are as or more specific (the
    longest `rpz-ip` prefix wins; a /32 block inside an excepted /24 stays blocked)."""
    for kind, family in _FAMILY.items():
        holes = [i.value for i in exceptions if i.type == kind]
        if not holes:
            continue
        width = bits(family)
        own.addrs[kind] -= {h for h in holes if "/" not in h}
        carve: dict[str, list[str]] = {}
        for hole in holes:
            address, _, length = hole.partition("/")
            value, size = to_int(address, family), int(length or width)
            for plen in range(size + 1):
                host = width - plen
                net = f"{int_to_text(value >> host << host, family)}/{plen}"
                if net in own.nets[kind]:
                    carve.setdefault(net, []).append(hole)
        for net, inside in carve.items():
            own.nets[kind].discard(net)
            rest = subtract([span(net, family)], spans(inside, family))
            for piece in to_cidrs(rest, family):
                (own.nets if "/" in piece else own.addrs)[kind].add(piece)
