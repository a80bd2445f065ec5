"""RPZ semantics kept from feed to zone (issue 13): wildcard-only triggers, a feed's exceptions
scoped to that feed and rendered `rpz-passthru.`, drop/nodata actions; and the names the zone
cannot hold refused before they reach it."""

from __future__ import annotations

from pathlib import Path

import dns.name
import netaddr
import pytest

from agent import guards
from agent.config import DnsConfig
from agent.formats import parse
from agent.guards import Policy
from agent.indicators import PASSTHRU, Indicator, normalize, owner_octets
from agent.merge import Blocklist, merge
from agent.plan import allowed_only, deescalation, make_plan
from agent.psl import default
from agent.render.rpz import changed_records, render_zone, zone_records
from agent.why import _name_verdict

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
DNS = DnsConfig()


def rpz(text: str) -> list[Indicator]:
    return list(parse(text.encode(), "rpz").indicators)


def plain(*values: str) -> list[Indicator]:
    return [normalize(v) for v in values]


def records(bl: Blocklist, dns: DnsConfig = DNS) -> dict[str, str]:
    return zone_records(dns, bl)


def verdict(bl: Blocklist, name: str) -> str | None:
    found = list(_name_verdict(bl, name))
    return found[0]["entry"] if found else None


def test_wildcard_only_blocks_below_not_the_name() -> None:
    bl = merge([rpz("*.only-subs.example CNAME .\n")])
    assert bl.below == {"only-subs.example"} and bl.names == bl.wild == frozenset()
    assert records(bl) == {"*.only-subs.example": "CNAME ."}
    assert verdict(bl, "only-subs.example") is None
    assert verdict(bl, "a.b.only-subs.example") == "*.only-subs.example"
    assert bl.total == 1


def test_name_and_wildcard_lines_join_into_name_and_below() -> None:
    bl = merge([rpz("x.example CNAME .\n*.x.example CNAME .\n")])
    assert (bl.names, bl.wild, bl.below) == (frozenset(), {"x.example"}, frozenset())
    # the same from two sources: one lists the name, the other the names below
    assert merge([rpz("x.example CNAME .\n"), rpz("*.x.example CNAME .\n")]) == bl


def test_names_under_a_wildcard_only_block_are_covered() -> None:
    bl = merge([rpz("*.x.example CNAME .\n"), plain("a.x.example", "x.example.org")])
    assert bl.names == {"x.example.org"} and bl.below == {"x.example"}


def test_googleapis_exception_is_rendered_passthru_under_its_feeds_wildcard() -> None:
    zone = parse((DATA / "googleapis-restricted.rpz").read_bytes(), "rpz").indicators
    bl = merge([zone])
    assert bl.below == {"googleapis.com"} and bl.pass_names == {"restricted.googleapis.com"}
    assert records(bl) == {"*.googleapis.com": "CNAME .",
                           "restricted.googleapis.com": "CNAME rpz-passthru."}
    assert verdict(bl, "storage.googleapis.com") == "*.googleapis.com"
    assert verdict(bl, "restricted.googleapis.com") is None  # passthru: exact beats wildcard
    assert verdict(bl, "x.restricted.googleapis.com") == "*.googleapis.com"  # not below it


def test_an_exception_never_unblocks_another_feeds_entry() -> None:
    zone = parse((DATA / "googleapis-restricted.rpz").read_bytes(), "rpz").indicators
    for other in (plain("restricted.googleapis.com"), plain("*.googleapis.com"),
                  rpz("*.googleapis.com CNAME .\n")):
        bl = merge([zone, other])
        assert bl.pass_names == frozenset(), other
        assert verdict(bl, "restricted.googleapis.com") is not None, other


def test_an_exception_alone_blocks_nothing() -> None:
    bl = merge([rpz("ok.example CNAME rpz-passthru.\n32.1.2.0.192.rpz-ip CNAME rpz-passthru.\n")])
    assert bl.total == 0 and bl.pass_names == frozenset() and records(bl) == {}


def test_exception_for_the_same_owner_carves_the_feeds_own_block() -> None:
    bl = merge([rpz("x.example CNAME .\n*.x.example CNAME .\nx.example CNAME rpz-passthru.\n")])
    assert (bl.names, bl.wild, bl.below, bl.pass_names) == (
        frozenset(), frozenset(), {"x.example"}, frozenset())
    bl = merge([rpz("x.example CNAME .\n*.x.example CNAME .\n*.x.example CNAME rpz-passthru.\n")])
    assert (bl.names, bl.wild, bl.below) == ({"x.example"}, frozenset(), frozenset())


def test_wildcard_exception_below_a_wildcard_block_and_an_exact_block_below_it() -> None:
    feed = rpz("*.bad.example CNAME .\n*.good.bad.example CNAME rpz-passthru.\n")
    bl = merge([feed, plain("x.good.bad.example")])
    assert bl.pass_below == {"good.bad.example"}
    # the other feed's exact name stays in the zone: without it, the passthru would cover it
    assert bl.names == {"x.good.bad.example"}
    assert verdict(bl, "x.good.bad.example") == "x.good.bad.example"
    assert verdict(bl, "y.good.bad.example") is None
    assert verdict(bl, "y.bad.example") == "*.bad.example"


def test_address_exception_is_carved_from_its_feeds_prefix_only() -> None:
    feed = rpz("24.0.2.0.192.rpz-ip CNAME .\n32.9.2.0.192.rpz-ip CNAME rpz-passthru.\n"
               "32.7.100.51.198.rpz-ip CNAME .\n24.0.100.51.198.rpz-ip CNAME rpz-passthru.\n")
    bl = merge([feed])
    blocked = netaddr.IPSet([*bl.v4, *bl.v4_nets])
    assert "192.0.2.9" not in blocked and "192.0.2.8" in blocked and "192.0.2.10" in blocked
    assert blocked & netaddr.IPSet(["192.0.2.0/24"]) == netaddr.IPSet(["192.0.2.0/24"]) - \
        netaddr.IPSet(["192.0.2.9"])
    assert "198.51.100.7" in bl.v4  # a /32 block inside an excepted /24: the longer wins
    # scoped: another feed listing the address keeps it blocked, for nft and rpz-ip alike
    assert "192.0.2.9" in merge([feed, plain("192.0.2.9")]).v4


def test_feed_actions_are_rendered_and_the_stronger_wins() -> None:
    feed = rpz("drop.example CNAME rpz-drop.\nnodata.example CNAME *.\n*.w.example CNAME *.\n"
               "plain.example CNAME .\n")
    bl = merge([feed, plain("nodata.example")])
    assert records(bl) == {"drop.example": "CNAME rpz-drop.", "nodata.example": "CNAME *.",
                           "*.w.example": "CNAME *.", "plain.example": "CNAME ."}
    assert merge([feed, rpz("nodata.example CNAME rpz-drop.\n")]).drop == {
        "drop.example", "nodata.example"}
    redirect = DnsConfig(action="redirect:192.0.2.80")
    assert records(bl, redirect)["plain.example"] == "A 192.0.2.80"
    assert records(bl, redirect)["drop.example"] == "CNAME rpz-drop."


def test_local_allow_still_wins_over_a_wildcard_only_block() -> None:
    bl = merge([rpz("*.corp.example CNAME .\n")], allow=plain("*.corp.example"))
    assert bl.below == frozenset() and bl.total == 0


def test_changed_records_follow_the_new_sets() -> None:
    before = merge([rpz("*.a.example CNAME .\nx.example CNAME .\n")])
    after = merge([rpz("*.a.example CNAME rpz-drop.\nx.example CNAME .\n"
                       "*.b.example CNAME .\nok.b.example CNAME rpz-passthru.\n")])
    plan = make_plan(before, after, max_change=1.0)
    old, new = changed_records(DNS, after, plan.changes)
    assert old == {"*.a.example": "CNAME ."}
    assert new == {"*.a.example": "CNAME rpz-drop.", "*.b.example": "CNAME .",
                   "ok.b.example": "CNAME rpz-passthru."}


def test_json_round_trip_keeps_the_new_sets_and_reads_old_state() -> None:
    bl = merge([rpz("*.a.example CNAME rpz-drop.\n*.b.example CNAME .\n"
                    "ok.b.example CNAME rpz-passthru.\n")])
    assert Blocklist.from_json(bl.to_json()) == bl
    old_state = {k: v for k, v in bl.to_json().items() if k not in ("below", "drop")}
    assert Blocklist.from_json(old_state).below == frozenset()


# --- names the zone cannot hold ---------------------------------------------------------------


def long_name(length: int) -> str:
    """A valid name of exactly `length` characters (labels of up to 63)."""
    text = ".".join(["a" * 63] * 5)[:length]
    return text[:-1] + "x" if text.endswith(".") else text


@pytest.mark.parametrize("zone", ["rpz.blocklist-agent.", "a-much-longer-policy-zone.example."])
def test_guard_refuses_names_whose_owner_passes_255_octets(zone: str) -> None:
    policy = Policy.build(psl=default(), zone=zone)
    for length in range(200, 254):
        name = normalize(long_name(length)).value
        for wildcard in (False, True):
            ind = Indicator("domain", name, wildcard)
            bad = policy.check_one(ind)
            fits = True
            try:
                dns.name.from_text(("*." if wildcard else "") + name + "." + zone)
            except dns.name.NameTooLong:
                fits = False
            assert (bad is None or bad.reason != guards.NAME_TOO_LONG) == fits, (length, wildcard)
            assert fits == (owner_octets(name, zone, wildcard=wildcard) <= 255)


def test_name_too_long_reason_and_detail() -> None:
    policy = Policy.build(psl=default())
    name = normalize(long_name(240)).value
    bad = policy.check_one(Indicator("domain", name))
    assert bad is not None and bad.reason == guards.NAME_TOO_LONG
    assert "rpz.blocklist-agent." in bad.detail and "octets" in bad.detail
    assert guards.NAME_TOO_LONG in guards.REASONS
    exception = Indicator("domain", name, action=PASSTHRU)  # an exception must fit as well
    assert policy.check_one(exception) is not None


def test_renderer_never_writes_an_owner_the_zone_cannot_hold() -> None:
    name = normalize(long_name(240)).value
    bl = merge([[Indicator("domain", name)], plain("ok.example")], allow=plain(name))
    zone = render_zone(DNS, bl, 7)
    assert name not in zone and "ok.example CNAME ." in zone


def test_exception_skips_the_guards_that_concern_blocks() -> None:
    policy = Policy.build(psl=default(), protected=["sante.fr"])
    for value in ("sante.fr", "fr", "10.0.0.0/8"):
        assert policy.check_one(normalize(value)._replace(action=PASSTHRU)) is None, value


def test_per_feed_min_prefix_overrides_the_guards() -> None:
    policy = Policy.build(psl=default())
    drop = parse((DATA / "spamhaus-dropv6-29.txt").read_bytes()).indicators
    assert {r.reason for r in policy.check(drop).rejected} == {guards.PREFIX_TOO_SHORT}
    assert len(policy.check(drop).accepted) == 1  # the /32 alone
    trusted = policy.for_feed(None, 29)
    assert len(trusted.check(drop).accepted) == 4 and trusted.min_prefix_v4 == 8
    assert policy.for_feed(None, None) is policy
    assert policy.for_feed(24, None).check(plain("5.0.0.0/16")).rejected


# --- a held plan's unblocking part keeps the RPZ sets -------------------------------------------


def test_deescalation_keeps_rpz_scopes_and_applies_new_exceptions() -> None:
    before = merge([rpz("*.a.example CNAME rpz-drop.\n*.b.example CNAME .\nc.example CNAME .\n"
                        "*.c.example CNAME .\n")])
    after = merge([rpz("*.a.example CNAME rpz-drop.\nok.a.example CNAME rpz-passthru.\n"
                       "c.example CNAME .\nnew.example CNAME .\n")])
    partial = deescalation(before, after)
    assert partial.below == {"a.example"} and partial.drop == {"a.example"}
    assert partial.pass_names == {"ok.a.example"}  # the new exception unblocks at once
    assert partial.names == {"c.example"}  # *.c.example was dropped: narrowed to the name
    assert "new.example" not in partial.names  # an addition waits for the hold
    assert verdict(partial, "x.b.example") is None and verdict(partial, "x.a.example")


def test_allowed_only_keeps_rpz_sets() -> None:
    before = merge([rpz("*.a.example CNAME rpz-drop.\nok.a.example CNAME rpz-passthru.\n"
                        "n.example CNAME *.\n*.w.example CNAME .\nw.example CNAME .\n")])
    kept = allowed_only(before, plain("n.example"))
    assert kept.below == {"a.example"} and kept.pass_names == {"ok.a.example"}
    assert kept.drop == {"a.example"} and kept.wild == {"w.example"}
    assert kept.names == frozenset() and kept.nodata == frozenset()
