"""Normalization: one canonical text per value, and nothing unsafe ever accepted."""

from __future__ import annotations

import pytest

from agent.indicators import DOMAIN, IPV4, IPV6, InvalidValue, normalize


@pytest.mark.parametrize(
    ("raw", "kind", "value", "subdomains"),
    [
        ("1.2.3.4", IPV4, "1.2.3.4", False),
        ("  1.2.3.4\r", IPV4, "1.2.3.4", False),
        ("1.2.3.4/24", IPV4, "1.2.3.0/24", False),  # host bits dropped, as routers do
        ("1.2.3.4/32", IPV4, "1.2.3.4", False),  # a host prefix is an address
        ("1.2.3.4:8080", IPV4, "1.2.3.4", False),
        ("2001:DB8:0:0::1", IPV6, "2001:db8::1", False),
        ("2001:db8::/32", IPV6, "2001:db8::/32", False),
        ("2001:db8::1/128", IPV6, "2001:db8::1", False),
        ("[2001:db8::1]:443", IPV6, "2001:db8::1", False),
        ("EVIL.Example.", DOMAIN, "evil.example", False),
        ("*.evil.example", DOMAIN, "evil.example", True),
        (".evil.example", DOMAIN, "evil.example", True),
        ("https://Evil.Example:8443/a/b?c=d", DOMAIN, "evil.example", False),
        ("hxxps://evil[.]example/x", DOMAIN, "evil.example", False),
        ("http://198.51.100.7/payload", IPV4, "198.51.100.7", False),
        ("bücher.example", DOMAIN, "xn--bcher-kva.example", False),
        ("_dmarc.evil.example", DOMAIN, "_dmarc.evil.example", False),
        ("fr", DOMAIN, "fr", False),  # valid syntax: refusing TLDs is the guards' job
    ],
)
def test_normalize(raw: str, kind: str, value: str, subdomains: bool) -> None:
    ind = normalize(raw, ref="7")
    assert (ind.type, ind.value, ind.subdomains, ind.ref) == (kind, value, subdomains, "7")


@pytest.mark.parametrize(
    "raw",
    [
        "", "   ", "1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4/33", "1.2.3.4/x",
        "2001:db8::1/129", "fe80::1%eth0", "1.2.3.4.5", "a..b", "-evil.example",
        "evil-.example", "x" * 64 + ".example", ("a." * 127) + "example",
        "evil.example; flush ruleset", "evil.example\n* CNAME .", 'evil"example',
        "evil example", "evil.example}", "*.1.2.3.4", "http://", "evil/example",
    ],
)
def test_rejects_malformed_and_unsafe(raw: str) -> None:
    with pytest.raises(InvalidValue) as err:
        normalize(raw)
    assert str(err.value)  # the reason is always written for the operator


def test_expiry_is_kept() -> None:
    assert normalize("evil.example", expires=1_800_000_000).expires == 1_800_000_000
