"""The pure halves of the API sources: MISP attributes mapped by type with their provenance, and
MISP warninglists for known-good (`role: allow`) feeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.formats import parse
from agent.formats.misp_attributes import NETWORK_TYPES

DATA = Path(__file__).resolve().parent.parent / "data" / "sources"
EVENT = "5f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"


def test_every_mapped_type_becomes_indicators_and_no_other_does() -> None:
    parsed = parse((DATA / f"{EVENT}.json").read_bytes(), "misp-attributes")
    assert sorted(i.value for i in parsed.indicators) == sorted([
        "185.220.101.7",  # ip-dst
        "45.137.21.9",  # ip-src
        "91.219.236.18",  # ip-dst|port: the address, not the port
        "2a0b:4141:820:1::7",  # ip-src|port
        "login-ameli-secure.example",  # domain
        "cdn.update-check.example",  # hostname
        "beacon.example", "193.42.33.14",  # domain|ip: both
        "drop.invoice-portal.example",  # url: its host
        "panel.c2-infra.example", "193.42.33.15",  # an object's attributes
    ])
    # link, email-src, sha256, AS are context; to_ids false and deleted are skipped: no rejects
    assert parsed.rejects == ()
    mapped = {"ip-dst", "ip-src", "ip-dst|port", "ip-src|port", "domain", "hostname",
              "domain|ip", "url"}
    assert mapped == NETWORK_TYPES


def test_a_real_feed_event_without_network_indicators_gives_nothing() -> None:
    parsed = parse((DATA / "57c4445b-c548-4654-af0b-4be3950d210f.json").read_bytes(),
                   "misp-attributes")
    assert parsed == ((), ())  # link, comment, text, filename, hashes, regkey|value


def test_refs_name_the_event_the_attribute_and_the_event_info() -> None:
    parsed = parse((DATA / f"{EVENT}.json").read_bytes(), "misp-attributes")
    ref = next(i.ref for i in parsed.indicators if i.value == "185.220.101.7")
    assert ref == (f"MISP event {EVENT}, attribute 6a000001-0000-4000-8000-000000000001: "
                   "Phishing and C2 against healthcare providers")


def restsearch(*attributes: dict[str, object]) -> bytes:
    return json.dumps({"response": {"Attribute": list(attributes)}}).encode()


def attr(value: str, kind: str = "ip-dst", **extra: object) -> dict[str, object]:
    return {"uuid": f"u-{value}", "type": kind, "value": value, "to_ids": True,
            "Event": {"id": "42", "uuid": "e-1", "info": "Emotet\tC2\nwave"}, **extra}


@pytest.mark.parametrize(("extra", "kept"), [
    ({}, True),
    ({"to_ids": False}, False),
    ({"to_ids": "0"}, False),
    ({"deleted": True}, False),
    ({"decay_score": [{"score": 12.5, "decayed": True}]}, False),
    ({"decay_score": [{"score": 80, "decayed": False}, {"score": 1, "decayed": True}]}, True),
])
def test_restsearch_flags(extra: dict[str, object], kept: bool) -> None:
    parsed = parse(restsearch(attr("185.220.101.7", **extra)), "misp-attributes")
    assert [i.value for i in parsed.indicators] == (["185.220.101.7"] if kept else [])


def test_restsearch_ref_is_one_printable_line() -> None:
    parsed = parse(restsearch(attr("185.220.101.7")), "misp-attributes")
    assert parsed.indicators[0].ref == \
        "MISP event 42 e-1, attribute u-185.220.101.7: Emotet\\tC2\\nwave"


def test_empty_and_broken_restsearch_answers() -> None:
    assert parse(b'{"response": []}', "misp-attributes") == ((), ())
    bad = parse(restsearch(attr("999.1.1.1"), "nope"), "misp-attributes")  # type: ignore[arg-type]
    assert [r.reason for r in bad.rejects] == [
        "not a valid address or domain name: 999.1.1.1", "MISP attribute is not a JSON object"]


def test_cidr_warninglist() -> None:
    parsed = parse((DATA / "cloudflare-warninglist.json").read_bytes(), "misp-warninglist")
    assert len(parsed.indicators) == 22 and parsed.rejects == ()
    assert parsed.indicators[3].value == "104.16.0.0/13"
    assert parsed.indicators[3].ref == "List of known Cloudflare IP ranges list[3]"


def test_hostname_warninglist_covers_subdomains() -> None:
    document = {"name": "file sharing", "type": "hostname", "list": [
        "raw.githubusercontent.com", ".onedrive.live.com", "*.sharepoint.com", "not a host"]}
    parsed = parse(json.dumps(document).encode(), "misp-warninglist")
    assert [(i.value, i.subdomains) for i in parsed.indicators] == [
        ("raw.githubusercontent.com", True), ("onedrive.live.com", True),
        ("sharepoint.com", True)]
    assert len(parsed.rejects) == 1


@pytest.mark.parametrize("kind", ["string", "substring", "regex"])
def test_text_warninglists_are_counted_rejects(kind: str) -> None:
    document = {"name": "n", "type": kind, "list": ["a", "b"]}
    parsed = parse(json.dumps(document).encode(), "misp-warninglist")
    assert parsed.indicators == ()
    assert [r.ref for r in parsed.rejects] == ["n list[0]", "n list[1]"]
    assert "only cidr and hostname" in parsed.rejects[0].reason
