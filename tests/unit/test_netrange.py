"""Address-range arithmetic, checked against netaddr on random ranges of both families."""

from __future__ import annotations

import random
import socket

import netaddr
import pytest

from agent import netrange
from agent.netrange import AF_INET, AF_INET6, SpanSet


def random_cidrs(rnd: random.Random, family: int, count: int) -> list[str]:
    """Prefixes and addresses crowded into a small block, so that they overlap and touch."""
    bits = netrange.bits(family)
    base = netrange.to_int("10.0.0.0" if family == AF_INET else "2001:db8::", family)
    out = []
    for _ in range(count):
        plen = rnd.randrange(bits - 10, bits + 1)
        value = base + rnd.randrange(1 << 12)
        text = netrange.to_text(value, family)
        out.append(text if plen == bits else f"{text}/{plen}")
    return out


def ipset(values: list[str]) -> netaddr.IPSet:
    return netaddr.IPSet(netaddr.IPNetwork(v).cidr for v in values)


@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
def test_aggregate_and_subtract_agree_with_netaddr(family: int) -> None:
    rnd = random.Random(family)
    for _ in range(50):
        blocked = random_cidrs(rnd, family, rnd.randrange(1, 30))
        holes = random_cidrs(rnd, family, rnd.randrange(0, 5))
        expected = ipset(blocked) - ipset(holes)
        left = netrange.subtract(netrange.spans(blocked, family), netrange.spans(holes, family))
        cidrs = netrange.to_cidrs(left, family)
        assert ipset(cidrs) == expected
        assert len(cidrs) == len(list(expected.iter_cidrs()))  # the fewest prefixes
        assert ipset(netrange.aggregate(blocked, family)) == ipset(blocked)


def test_span_ignores_host_bits_and_reads_single_addresses() -> None:
    assert netrange.span("192.0.2.7/24", AF_INET) == netrange.span("192.0.2.0/24", AF_INET)
    first, last = netrange.span("2001:db8::/126", AF_INET6)
    assert last - first == 3
    assert netrange.span("192.0.2.1", AF_INET) == (3221225985, 3221225985)
    with pytest.raises(OSError):
        netrange.span("not-an-address", AF_INET)


def test_adjacent_spans_are_joined_and_host_prefixes_written_as_addresses() -> None:
    assert netrange.aggregate(["192.0.2.0/25", "192.0.2.128/25"], AF_INET) == ["192.0.2.0/24"]
    assert netrange.aggregate(["192.0.2.1", "192.0.2.2"], AF_INET) == ["192.0.2.1", "192.0.2.2"]


def test_covers_within_one_family_only() -> None:
    assert netrange.covers("192.0.2.0/24", "192.0.2.200")
    assert netrange.covers("192.0.2.0/24", "192.0.2.128/25")
    assert not netrange.covers("192.0.2.128/25", "192.0.2.0/24")
    assert not netrange.covers("::/0", "192.0.2.1")
    assert netrange.family_of("2001:db8::1") == socket.AF_INET6


def test_spanset_inside_and_touching() -> None:
    covering = SpanSet.of(["192.0.2.0/25", "198.51.100.7"], AF_INET)
    assert covering.outside({"192.0.2.1", "192.0.2.200", "198.51.100.7", "198.51.100.8"}) == {
        "192.0.2.200", "198.51.100.8"}
    first, last = netrange.span("192.0.2.0/24", AF_INET)
    assert covering.touches(first, last)
    first, last = netrange.span("192.0.2.128/25", AF_INET)
    assert not covering.touches(first, last)
    assert not SpanSet.of([], AF_INET)


@pytest.mark.parametrize("limit", [netrange.MAX_TOUCHED, 0])
def test_outside_is_the_same_with_and_without_the_24_shortcut(
        monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    rnd = random.Random(5)
    nets = [f"10.{rnd.randrange(4)}.{rnd.randrange(256)}.0/{rnd.choice([16, 23, 24, 28, 31])}"
            for _ in range(300)]
    addrs = {f"10.{rnd.randrange(4)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
             for _ in range(5000)} | {"10.1.2.3", "10.1.23.4", "10.1.2.30"}
    covered = [netaddr.IPNetwork(n) for n in nets]
    want = {a for a in addrs if not any(netaddr.IPAddress(a) in net for net in covered)}
    monkeypatch.setattr(netrange, "MAX_TOUCHED", limit)
    assert SpanSet.of(nets, AF_INET).outside(addrs) == want
