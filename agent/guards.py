"""Guard rails (docs/design.md §5): a feed must never be able to take the hospital offline.

Every indicator passes here before it can be merged. Refused entries are reported with a stable
reason code (counted per reason in the plan, `status` and metrics) and a sentence for the
operator; they are never enforced. Pure: the policy is built from the config plus facts read at
the edge (the gateway's own addresses, its resolvers, the public-suffix list) and passed in.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from agent.config import Config
from agent.indicators import (
    DOMAIN,
    IPV4,
    IPV6,
    MAX_DNS_NAME,
    PASSTHRU,
    Indicator,
    InvalidValue,
    normalize,
    owner_octets,
)
from agent.netrange import (
    AF_INET,
    AF_INET6,
    SpanSet,
    family_of,
    join,
    span,
    spans,
    subtract,
    to_cidrs,
)
from agent.psl import PublicSuffixes
from agent.util.timefmt import iso_z

# Reason codes: stable, used as keys in status, metrics and --json.
PREFIX_TOO_SHORT = "prefix-too-short"
SPECIAL_RANGE = "special-range"
PROTECTED = "protected"
OWN_ADDRESS = "own-address"
PUBLIC_SUFFIX = "public-suffix"
EXPIRED = "expired"
RESERVED_NAME = "reserved-name"
NAME_TOO_LONG = "name-too-long"
LIFELINE = "lifeline"
REASONS = (PREFIX_TOO_SHORT, SPECIAL_RANGE, PROTECTED, OWN_ADDRESS, PUBLIC_SUFFIX, EXPIRED,
           RESERVED_NAME, LIFELINE, NAME_TOO_LONG)

# IANA special-purpose registries (RFC 6890 and successors): never a sensible block target, and
# blocking them could cut the hospital's own networks. `guards.allow_special` lifts a range.
SPECIAL_V4 = (
    ("0.0.0.0/8", "'this network'"), ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT"), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"), ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private (RFC 1918)"), ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
)
SPECIAL_V6 = (
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b::/96", "NAT64"), ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments"), ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"), ("fc00::/7", "unique local"), ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)


class GuardReject(NamedTuple):
    indicator: Indicator
    reason: str
    detail: str


class GuardResult(NamedTuple):
    accepted: tuple[Indicator, ...]
    rejected: tuple[GuardReject, ...]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejected))


class _Ranges(SpanSet):
    """Labelled ranges of one family, answering "does [first, last] touch any of them?" with one
    bisect.

    The label is looked up again (slowly) only for the rare entry that is refused, to name the
    range in the message.
    """

    __slots__ = ("items",)

    def __init__(self, family: int, labelled: Iterable[tuple[str, str]]) -> None:
        items = sorted((*span(cidr, family), label) for cidr, label in labelled)
        super().__init__(family, join((first, last) for first, last, _ in items))
        self.items = items

    def label(self, first: int, last: int) -> str:
        for lo, hi, label in self.items:
            if lo <= last and hi >= first:
                return label
        return ""


def _lift(ranges: Sequence[tuple[str, str]], allowed: Sequence[str], family: int) -> list[
    tuple[str, str]
]:
    """Drop the special ranges that `allow_special` lifts (the whole range, or a part of it)."""
    holes = spans((a for a in allowed if family_of(a) == family), family)
    out: list[tuple[str, str]] = []
    for cidr, label in ranges:
        remaining = subtract([span(cidr, family)], holes)
        out.extend((net, f"{cidr}, {label}") for net in to_cidrs(remaining, family))
    return out


def _ancestors(names: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for name in names:
        labels = name.split(".")
        out.update(".".join(labels[i:]) for i in range(1, len(labels)))
    return frozenset(out)


@dataclass(frozen=True)
class Policy:
    """Everything the guards need, prepared once per sync so each check costs one bisect."""

    min_prefix_v4: int
    min_prefix_v6: int
    prefix_rule: dict[str, tuple[int, int, int]]  # family, minimum, host bits of a /minimum
    special: dict[str, _Ranges]
    protected: dict[str, _Ranges]
    own: dict[str, _Ranges]
    lifeline: dict[str, _Ranges]
    any_range: dict[str, _Ranges]  # the union of the four: one bisect for the common case
    lifeline_names: dict[str, str]  # name -> what it is (a feed server, an NTP server, ...)
    lifeline_ancestors: frozenset[str]
    protected_names: frozenset[str]
    protected_suffixes: tuple[str, ...]
    protected_ancestors: frozenset[str]
    psl: PublicSuffixes
    now: int
    zone: str = "rpz.blocklist-agent."  # dns.zone: every name must fit under it (255 octets)

    @classmethod
    def build(
        cls,
        *,
        min_prefix_v4: int = 8,
        min_prefix_v6: int = 32,
        protected: Iterable[str] = (),
        allow_special: Sequence[str] = (),
        own_addresses: Iterable[str] = (),
        lifelines: Iterable[tuple[str, str]] = (),
        protected_addresses: Iterable[tuple[str, str]] = (),
        psl: PublicSuffixes,
        now: int | None = None,
        zone: str = "rpz.blocklist-agent.",
    ) -> Policy:
        """`lifelines` and `protected_addresses` are (address or name, what it is) pairs found
        at the edge (agent/lifelines.py); the second only holds addresses."""
        nets: dict[str, list[tuple[str, str]]] = {IPV4: [], IPV6: []}
        names: set[str] = set()
        for entry in protected:
            ind = _protected_entry(entry)
            if ind.type == DOMAIN:
                names.add(ind.value)
            else:
                nets[ind.type].append((ind.value, entry))
        own: dict[str, list[tuple[str, str]]] = {IPV4: [], IPV6: []}
        for addr in own_addresses:
            kind = IPV6 if ":" in addr else IPV4
            own[kind].append((addr, addr))
        for addr, what in protected_addresses:
            nets[IPV6 if ":" in addr else IPV4].append((addr, f"{addr}, {what}"))
        life: dict[str, list[tuple[str, str]]] = {IPV4: [], IPV6: []}
        life_names: dict[str, str] = {}
        for value, what in lifelines:
            try:
                ind = normalize(value)
            except InvalidValue:
                continue
            if ind.type == DOMAIN:
                life_names.setdefault(ind.value, what)
            else:
                life[ind.type].append((ind.value, f"{ind.value}, {what}"))
        v4, v6 = AF_INET, AF_INET6
        special4 = _lift(SPECIAL_V4, allow_special, v4)
        special6 = _lift(SPECIAL_V6, allow_special, v6)
        return cls(
            min_prefix_v4=min_prefix_v4,
            min_prefix_v6=min_prefix_v6,
            prefix_rule={IPV4: (v4, min_prefix_v4, 32 - min_prefix_v4),
                         IPV6: (v6, min_prefix_v6, 128 - min_prefix_v6)},
            special={IPV4: _Ranges(v4, special4), IPV6: _Ranges(v6, special6)},
            protected={IPV4: _Ranges(v4, nets[IPV4]), IPV6: _Ranges(v6, nets[IPV6])},
            own={IPV4: _Ranges(v4, own[IPV4]), IPV6: _Ranges(v6, own[IPV6])},
            lifeline={IPV4: _Ranges(v4, life[IPV4]), IPV6: _Ranges(v6, life[IPV6])},
            any_range={
                IPV4: _Ranges(v4, [*special4, *nets[IPV4], *own[IPV4], *life[IPV4]]),
                IPV6: _Ranges(v6, [*special6, *nets[IPV6], *own[IPV6], *life[IPV6]]),
            },
            lifeline_names=life_names,
            lifeline_ancestors=_ancestors(life_names),
            protected_names=frozenset(names),
            protected_suffixes=tuple("." + n for n in sorted(names)),
            protected_ancestors=_ancestors(names),
            psl=psl,
            now=int(time.time()) if now is None else now,
            zone=zone,
        )

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        own_addresses: Iterable[str] = (),
        extra_protected: Iterable[str] = (),
        lifelines: Iterable[tuple[str, str]] = (),
        protected_addresses: Iterable[tuple[str, str]] = (),
        psl: PublicSuffixes,
        now: int | None = None,
    ) -> Policy:
        """The config's guards, plus what must stay reachable for the gateway to be managed.

        The management networks and the isolation allowlist (essential services) are protected
        too: a feed that blocked them would undo the crisis playbook.
        """
        g = config.guards
        protected = [*g.protected, *config.firewall.management, *config.isolation.allow,
                     *extra_protected]
        return cls.build(
            min_prefix_v4=g.min_prefix_v4, min_prefix_v6=g.min_prefix_v6, protected=protected,
            allow_special=g.allow_special, own_addresses=own_addresses, lifelines=lifelines,
            protected_addresses=protected_addresses, psl=psl, now=now,
            zone=config.dns.zone,
        )

    def for_feed(self, min_prefix_v4: int | None, min_prefix_v6: int | None) -> Policy:
        """This policy with a feed's own `min_prefix_v4` / `min_prefix_v6` (None: the guards'),
        e.g. Spamhaus DROPv6, whose /29 allocations the default /32 minimum would refuse."""
        v4 = self.min_prefix_v4 if min_prefix_v4 is None else min_prefix_v4
        v6 = self.min_prefix_v6 if min_prefix_v6 is None else min_prefix_v6
        if (v4, v6) == (self.min_prefix_v4, self.min_prefix_v6):
            return self
        return replace(self, min_prefix_v4=v4, min_prefix_v6=v6, prefix_rule={
            IPV4: (AF_INET, v4, 32 - v4), IPV6: (AF_INET6, v6, 128 - v6)})

    def check_one(self, ind: Indicator) -> GuardReject | None:
        """The reason this indicator must not be enforced, or None when it is safe.

        A feed's exception (PASSTHRU) blocks nothing, so only what the zone must hold applies.
        """
        if ind.action == PASSTHRU:
            return self._check_zone(ind) if ind.type == DOMAIN else None
        if ind.expires is not None and ind.expires <= self.now:
            return GuardReject(ind, EXPIRED, f"{ind.value}: expired at {iso_z(ind.expires)}")
        if ind.type == DOMAIN:
            return self._check_name(ind)
        return self._check_ip(ind)

    def _check_name(self, ind: Indicator) -> GuardReject | None:
        name = ind.value
        if name in self.protected_names or name.endswith(self.protected_suffixes):
            return GuardReject(ind, PROTECTED, f"{name} is a protected name or below one")
        if ind.subdomains and name in self.protected_ancestors:
            covered = sorted(p for p in self.protected_names if p.endswith("." + name))
            return GuardReject(ind, PROTECTED, f"*.{name} would cover protected {covered[0]}")
        if name in self.lifeline_names:
            return GuardReject(ind, LIFELINE, f"{name} is a lifeline of this gateway: "
                               f"{self.lifeline_names[name]}")
        if ind.subdomains and name in self.lifeline_ancestors:
            covered = sorted(n for n in self.lifeline_names if n.endswith("." + name))
            return GuardReject(ind, LIFELINE, f"*.{name} would cover {covered[0]}, a lifeline "
                               f"of this gateway: {self.lifeline_names[covered[0]]}")
        bad = self._check_zone(ind)
        if bad is not None:
            return bad
        if self.psl.is_public_suffix(name):
            return GuardReject(ind, PUBLIC_SUFFIX, f"{name} is a public suffix (a whole registry)")
        return None

    def _check_zone(self, ind: Indicator) -> GuardReject | None:
        """What the RPZ zone cannot hold: a name ending in an RPZ keyword label, or one whose
        owner under `dns.zone` (`*.` included for a wildcard) passes 255 octets, which would make
        the resolver refuse the whole zone and a dynamic update fail halfway."""
        name = ind.value
        if name.rpartition(".")[2].startswith("rpz-"):
            # "8.0.0.0.10.rpz-ip" in a feed would become an RPZ trigger for 10.0.0.0/8
            return GuardReject(ind, RESERVED_NAME, f"{name} ends in an RPZ keyword label")
        octets = owner_octets(name, self.zone, wildcard=ind.subdomains)
        if octets > MAX_DNS_NAME:
            shown = ind.shown if len(ind.shown) <= 60 else ind.shown[:57] + "..."
            return GuardReject(
                ind, NAME_TOO_LONG,
                f"{shown} ({len(name)} characters) does not fit under dns.zone {self.zone}: its "
                f"RPZ owner would be {octets} octets, more than the {MAX_DNS_NAME} of a DNS name")
        return None

    def name_suspect(self, name: str, subdomains: bool) -> bool:
        """A cheap necessary condition for _check_name to refuse `name` (False: it passes).

        The bulk path (agent.bulk) runs check_one only on the names this says True for; it
        must therefore stay a superset of every refusal of _check_name (a test proves it).
        """
        return self.name_suspect_test()(name, subdomains)

    def name_suspect_test(self) -> Callable[[str, bool], bool]:
        """`name_suspect` with everything it reads bound once (the bulk path calls it for every
        name of a list): the public-suffix test as two set lookups where the list offers them
        (a superset: its exceptions are not subtracted). The list is parsed at the first name
        that reaches that test: a sync that reads no new name does not parse it."""
        names, suffixes, ancestors = (self.protected_names, self.protected_suffixes,
                                      self.protected_ancestors)
        lifelines, life_ancestors = self.lifeline_names, self.lifeline_ancestors
        longest = MAX_DNS_NAME - len(self.zone) - 6  # an owner under dns.zone, generously
        sets = getattr(self.psl, "suffix_sets", None)
        plain: frozenset[str] | None = None  # the list is read at the first name that needs it
        wild: frozenset[str] = frozenset()
        is_suffix = self.psl.is_public_suffix

        def suspect(name: str, subdomains: bool) -> bool:
            nonlocal plain, wild
            if ("." not in name or name in names or name.endswith(suffixes)
                    or name in lifelines or len(name) > longest or "rpz-" in name):
                return True
            if subdomains and (name in ancestors or name in life_ancestors):
                return True
            if plain is None:
                if not callable(sets):
                    return is_suffix(name)
                plain, wild = sets()
            return name in plain or name[name.find(".") + 1:] in wild

        return suspect

    def clear_first_octets(self) -> frozenset[str]:
        """The first octets (as text) of the IPv4 /8s touching no protected, own or special
        range: a single address in one passes _check_ip, so the bulk path (agent.bulk) checks
        only the addresses outside them one by one. Must stay in step with _check_ip."""
        ranges = self.any_range[IPV4]
        return frozenset(str(o) for o in range(256)
                         if not ranges.touches(o << 24, (o << 24) | 0xFFFFFF))

    def _check_ip(self, ind: Indicator) -> GuardReject | None:
        value = ind.value
        family, minimum, host_bits = self.prefix_rule[ind.type]
        first, last = span(value, family)
        if (last - first) >> host_bits:  # more addresses than a /minimum holds
            return GuardReject(
                ind, PREFIX_TOO_SHORT,
                f"{value} is shorter than /{minimum} (guards.min_prefix_{ind.type[2:]})",
            )
        if not self.any_range[ind.type].touches(first, last):
            return None
        for ranges, reason, what in (
            (self.protected[ind.type], PROTECTED, "protected network"),
            (self.own[ind.type], OWN_ADDRESS, "address of this gateway"),
            (self.lifeline[ind.type], LIFELINE, "lifeline of this gateway"),
            (self.special[ind.type], SPECIAL_RANGE, "special-purpose range"),
        ):
            if ranges.touches(first, last):
                label = ranges.label(first, last)
                return GuardReject(ind, reason, f"{value} touches {what} {label}".rstrip())
        return None

    def check(self, indicators: Iterable[Indicator]) -> GuardResult:
        accepted: list[Indicator] = []
        rejected: list[GuardReject] = []
        check_one = self.check_one
        for ind in indicators:
            bad = check_one(ind)
            if bad is None:
                accepted.append(ind)
            else:
                rejected.append(bad)
        return GuardResult(tuple(accepted), tuple(rejected))


def _protected_entry(entry: str) -> Indicator:
    try:
        return normalize(entry)
    except InvalidValue as exc:
        from agent.errors import ConfigError

        raise ConfigError(f"protected entry {entry!r}: {exc}", where="guards.protected") from None

