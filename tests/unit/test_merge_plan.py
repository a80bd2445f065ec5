"""Merge (dedupe, aggregation, overrides) and plan (diff, change-ratio hold)."""

from __future__ import annotations

import random

import netaddr

from agent.indicators import normalize
from agent.merge import Blocklist, merge
from agent.plan import make_plan


def bl(*values: str, allow: tuple[str, ...] = ()) -> Blocklist:
    return merge([[normalize(v) for v in values]], allow=[normalize(a) for a in allow])


def test_dedupe_across_sources_and_split_by_kind() -> None:
    result = merge([[normalize("1.2.3.4"), normalize("evil.example")],
                    [normalize("1.2.3.4"), normalize("2a00::1"), normalize("*.phish.example")]])
    assert result.v4 == {"1.2.3.4"}
    assert result.v6 == {"2a00::1"}
    assert result.names == {"evil.example"}
    assert result.wild == {"phish.example"}
    assert result.total == 4


def test_prefixes_aggregated_without_overlap() -> None:
    result = bl("5.6.7.0/25", "5.6.7.128/25", "5.6.0.0/16", "9.9.9.0/24", "9.9.8.0/24",
                "2a00:1::/48", "2a00:1:1::/48")
    assert result.v4_nets == {"5.6.0.0/16", "9.9.8.0/23"}
    assert result.v6_nets == {"2a00:1::/47"}


def test_addresses_inside_prefixes_are_dropped() -> None:
    result = bl("5.6.0.0/16", "5.6.7.8", "5.7.0.1", "2a00::/32", "2a00::1", "2a01::1")
    assert result.v4 == {"5.7.0.1"}
    assert result.v6 == {"2a01::1"}


def test_allow_carves_prefix_and_removes_addresses() -> None:
    result = bl("5.6.0.0/16", "8.8.8.8", "9.9.9.9", allow=("5.6.7.8", "8.8.8.8"))
    assert "8.8.8.8" not in result.v4 and "9.9.9.9" in result.v4
    covered = netaddr.IPSet(list(result.v4_nets)) | netaddr.IPSet(list(result.v4))
    assert netaddr.IPAddress("5.6.7.8") not in covered
    assert (covered & netaddr.IPSet(["5.6.0.0/16"])).size == 65535  # the rest stays blocked
    assert result.allow_ips == {"5.6.7.8", "8.8.8.8"}


def test_names_covered_by_wildcard_parent_are_dropped_and_allow_wins() -> None:
    result = bl("a.evil.example", "*.evil.example", "b.c.evil.example", "*.x.evil.example",
                "good.example", allow=("good.example", "ok.evil.example"))
    assert result.wild == {"evil.example"}
    assert result.names == set()
    assert result.allow_names == {"good.example", "ok.evil.example"}


def test_wildcard_allow_removes_names_below_it() -> None:
    result = bl("a.corp.example", "*.b.corp.example", "other.example", allow=("*.corp.example",))
    assert result.names == {"other.example"}
    assert result.wild == set()
    assert result.allow_wild == {"corp.example"}


def test_aggregation_covers_exactly_the_input_addresses() -> None:
    rnd = random.Random(7)
    for _ in range(30):
        values = [f"7.{rnd.randrange(4)}.{rnd.randrange(256)}.0/{rnd.choice([22, 23, 24, 25])}"
                  for _ in range(40)]
        values += [f"7.{rnd.randrange(4)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
                   for _ in range(40)]
        allow = [f"7.{rnd.randrange(4)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
                 for _ in range(5)]
        result = bl(*values, allow=tuple(allow))
        expected = netaddr.IPSet(values) - netaddr.IPSet(allow)
        nets = [netaddr.IPNetwork(n) for n in result.v4_nets]
        got = netaddr.IPSet(nets) | netaddr.IPSet(list(result.v4))
        assert got == expected
        # no two enforced prefixes overlap, and no single address sits inside a prefix
        assert sum(n.size for n in nets) == netaddr.IPSet(nets).size
        assert not any(netaddr.IPAddress(a) in netaddr.IPSet(nets) for a in result.v4)


def test_json_round_trip() -> None:
    result = bl("1.2.3.4", "5.6.0.0/16", "2a00::1", "*.evil.example", allow=("good.example",))
    assert Blocklist.from_json(result.to_json()) == result


def test_first_plan_is_never_held() -> None:
    plan = make_plan(None, bl(*(f"8.8.{i}.1" for i in range(100))), max_change=0.1)
    assert plan.first and plan.held is None and plan.added == 100


def test_plan_diff_and_ratio() -> None:
    old = bl("1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "evil.example")
    new = bl("1.1.1.1", "2.2.2.2", "3.3.3.3", "5.5.5.5", "evil.example")
    plan = make_plan(old, new, max_change=0.5)
    assert plan.changes["v4"].added == {"5.5.5.5"}
    assert plan.changes["v4"].removed == {"4.4.4.4"}
    assert plan.changes["names"].added == frozenset()
    assert (plan.added, plan.removed, plan.ratio) == (1, 1, 0.2)
    assert plan.held is None


def test_plan_removing_most_entries_is_held_unless_forced() -> None:
    old = bl(*(f"8.8.{i}.1" for i in range(10)))
    new = bl("8.8.0.1")
    held = make_plan(old, new, max_change=0.5)
    assert held.held is not None and "90%" in held.held
    assert make_plan(old, new, max_change=0.5, force=True).held is None
    assert make_plan(old, bl(), max_change=0.5).held is not None  # an empty feed is held


def test_plan_growing_too_much_is_held() -> None:
    old = bl(*(f"8.8.{i}.1" for i in range(10)))
    new = bl(*(f"8.8.{i}.1" for i in range(16)))
    assert make_plan(old, new, max_change=0.5).held is not None
    assert make_plan(old, new, max_change=1.0).held is None


def test_small_lists_are_not_held_but_emptying_them_is() -> None:
    old = bl("8.8.8.8", "9.9.9.9", "1.1.1.0/24")
    carved = bl("8.8.8.8", "9.9.9.9", "1.1.1.0/24", allow=("1.1.1.7",))  # 1 prefix -> 7 pieces
    assert make_plan(old, carved, max_change=0.5).held is None
    assert make_plan(old, bl(), max_change=0.5).held is not None


def test_the_spans_a_merge_remembers_are_its_prefixes_spans() -> None:
    """The merge hands the spans it computed to the address share (netrange.known_spans): they
    must be those of the prefixes it returns, whatever was joined or carved."""
    from agent import netrange

    rnd = random.Random(7)
    for _ in range(200):
        nets = [f"10.{rnd.randrange(4)}.{rnd.randrange(4)}.{rnd.randrange(4) * 64}/"
                f"{rnd.choice([24, 25, 26, 32])}" for _ in range(rnd.randrange(1, 12))]
        allow = [f"10.{rnd.randrange(4)}.{rnd.randrange(4)}.{rnd.randrange(256)}"
                 for _ in range(rnd.randrange(3))]
        netrange.forget_spans()
        bl = merge([[normalize(n) for n in nets]], [normalize(a) for a in allow])
        assert netrange.set_spans(bl.v4_nets, netrange.AF_INET) == tuple(
            netrange.spans(bl.v4_nets, netrange.AF_INET)), (nets, allow)
