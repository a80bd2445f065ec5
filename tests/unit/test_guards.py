"""Guard rails: a feed must never be able to take the hospital offline."""

from __future__ import annotations

import pytest

from agent import guards
from agent.config import loads
from agent.guards import Policy
from agent.indicators import normalize
from agent.psl import PublicSuffixList, default

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.build(
        protected=["10.0.0.0/8", "chu-example.fr", "sante.fr", "192.0.2.10", "2a01:db8:99::/48"],
        own_addresses=["198.51.100.1", "2a02:db8::1"],
        psl=default(),
        now=NOW,
    )


def reason(policy: Policy, value: str, **kw: object) -> str | None:
    bad = policy.check_one(normalize(value)._replace(**kw))  # type: ignore[arg-type]
    return bad.reason if bad else None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0/0", guards.PREFIX_TOO_SHORT),
        ("::/0", guards.PREFIX_TOO_SHORT),
        ("8.0.0.0/7", guards.PREFIX_TOO_SHORT),
        ("2a00::/16", guards.PREFIX_TOO_SHORT),
        ("10.1.2.3", guards.PROTECTED),
        ("9.0.0.0/7", guards.PREFIX_TOO_SHORT),
        ("10.0.0.0/8", guards.PROTECTED),
        ("2a01:db8:99::5", guards.PROTECTED),
        ("198.51.100.1", guards.OWN_ADDRESS),
        ("2a02:db8::1", guards.OWN_ADDRESS),
        ("192.168.1.1", guards.SPECIAL_RANGE),
        ("127.0.0.1", guards.SPECIAL_RANGE),
        ("100.64.1.1", guards.SPECIAL_RANGE),
        ("169.254.1.1", guards.SPECIAL_RANGE),
        ("224.0.0.1", guards.SPECIAL_RANGE),
        ("203.0.113.5", guards.SPECIAL_RANGE),
        ("fe80::1", guards.SPECIAL_RANGE),
        ("fd00::1", guards.SPECIAL_RANGE),
        ("ff02::1", guards.SPECIAL_RANGE),
        ("2001:db8::1", guards.SPECIAL_RANGE),
        ("fr", guards.PUBLIC_SUFFIX),
        ("co.uk", guards.PUBLIC_SUFFIX),
        ("gouv.fr", guards.PUBLIC_SUFFIX),
        ("chu-example.fr", guards.PROTECTED),
        ("dpi.chu-example.fr", guards.PROTECTED),
        ("sante.fr", guards.PROTECTED),
        ("8.8.8.8", None),
        ("185.1.2.0/24", None),
        ("2a00:1450::1", None),
        ("evil.example", None),
        ("evil.co.uk", None),
        ("www.ck", None),  # an exception rule of the list
        ("8.0.0.0.10.rpz-ip", guards.RESERVED_NAME),  # would be an RPZ trigger for 10/8
        ("evil.rpz-nsdname", guards.RESERVED_NAME),
    ],
)
def test_guard_reasons(policy: Policy, value: str, expected: str | None) -> None:
    assert reason(policy, value) == expected


def test_wildcard_covering_a_protected_name_is_refused(policy: Policy) -> None:
    assert reason(policy, "*.fr") == guards.PROTECTED  # covers chu-example.fr
    assert reason(policy, "example.fr") is None
    assert reason(policy, "*.example.fr") is None


def test_expired_indicator_is_not_enforced(policy: Policy) -> None:
    assert reason(policy, "evil.example", expires=NOW - 1) == guards.EXPIRED
    assert reason(policy, "evil.example", expires=NOW + 60) is None


def test_allow_special_lifts_only_the_named_range() -> None:
    p = Policy.build(allow_special=["203.0.113.0/24", "2001:db8::/32"], psl=default(), now=NOW)
    assert p.check_one(normalize("203.0.113.5")) is None
    assert p.check_one(normalize("2001:db8::1")) is None
    still = p.check_one(normalize("198.51.100.5"))
    assert still is not None and still.reason == guards.SPECIAL_RANGE
    assert "198.51.100.0/24" in still.detail  # the message names the range


def test_check_counts_per_reason(policy: Policy) -> None:
    values = ["8.8.8.8", "10.1.1.1", "10.2.2.2", "fr", "evil.example"]
    result = policy.check(normalize(v) for v in values)
    assert [i.value for i in result.accepted] == ["8.8.8.8", "evil.example"]
    assert result.counts() == {guards.PROTECTED: 2, guards.PUBLIC_SUFFIX: 1}


def test_public_suffixes_come_from_debian_package() -> None:
    psl = default()
    assert len(psl) > 5000  # the real list, not a hand-written one
    assert psl.is_public_suffix("fr") and psl.is_public_suffix("com")
    assert psl.is_public_suffix("gouv.fr")
    assert not psl.is_public_suffix("example.com")


def test_public_suffix_rules() -> None:
    psl = PublicSuffixList(["// comment", "uk", "co.uk", "*.ck", "!www.ck"])
    assert psl.is_public_suffix("anything.ck")
    assert not psl.is_public_suffix("www.ck")
    assert not psl.is_public_suffix("a.b.ck")
    assert psl.is_public_suffix("localhost")  # implicit "*" rule


def test_policy_from_config_protects_management_and_isolation_allowlist() -> None:
    cfg = loads(
        "firewall:\n  management: [10.10.99.0/24, 192.0.2.0/28]\n"
        "isolation:\n  allow: [198.51.100.10, messagerie.mssante.fr]\n"
        "guards:\n  allow_special: [192.0.2.0/24, 198.51.100.0/24]\n"
    )
    p = Policy.from_config(cfg, psl=default(), now=NOW)
    for value in ("192.0.2.5", "198.51.100.10", "messagerie.mssante.fr"):
        bad = p.check_one(normalize(value))
        assert bad is not None and bad.reason == guards.PROTECTED, value
    assert p.check_one(normalize("198.51.100.11")) is None


def test_allow_special_can_lift_part_of_a_range() -> None:
    p = Policy.build(allow_special=["192.0.2.128/25"], psl=default(), now=NOW)
    assert p.check_one(normalize("192.0.2.200")) is None
    still = p.check_one(normalize("192.0.2.5"))
    assert still is not None and still.reason == guards.SPECIAL_RANGE
    assert "192.0.2.0/24, documentation" in still.detail  # named by the range it belongs to


def test_guards_ask_the_list_they_are_given() -> None:
    p = Policy.build(psl=PublicSuffixList(["example"]), now=NOW)  # no file is read
    assert reason(p, "example") == guards.PUBLIC_SUFFIX
    assert reason(p, "fr") == guards.PUBLIC_SUFFIX  # a single label always is
    assert reason(p, "gouv.fr") is None
