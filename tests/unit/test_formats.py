"""Format parsers on realistic samples (tests/data/formats): exact indicators, rejects, sniffing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import FormatError
from agent.formats import FORMAT_NAMES, parse, sniff
from agent.indicators import ParseResult

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
FAR = 1893456000  # 2030-01-01T00:00:00Z
PAST = 1577836800  # 2020-01-01T00:00:00Z

Row = tuple[str, str, bool, int | None, str]


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def rows(parsed: ParseResult) -> list[Row]:
    return [(i.type, i.value, i.subdomains, i.expires, i.ref) for i in parsed.indicators]


def rejects(parsed: ParseResult) -> list[tuple[str, str]]:
    return [(r.ref, r.reason) for r in parsed.rejects]


def d(value: str, ref: str, sub: bool = False, expires: int | None = None) -> Row:
    return ("domain", value, sub, expires, ref)


def v4(value: str, ref: str, expires: int | None = None) -> Row:
    return ("ipv4", value, False, expires, ref)


def v6(value: str, ref: str, expires: int | None = None) -> Row:
    return ("ipv6", value, False, expires, ref)


SAMPLES = {
    "plain.txt": "plain",
    "hosts.txt": "hosts",
    "spamhaus-drop.txt": "spamhaus-drop",
    "spamhaus-dropv6.txt": "spamhaus-drop",
    "spamhaus-drop.json": "spamhaus-json",
    "feodo.csv": "feodo-csv",
    "threatfox.csv": "threatfox-csv",
    "urlhaus.csv": "urlhaus-csv",
    "certfr-misp.csv": "misp-csv",
    "misp-export.csv": "misp-csv",
    "misp-event.json": "misp-json",
    "stix2-bundle.json": "stix2",
    "rpz.zone": "rpz",
    "misp-warninglist.json": "misp-warninglist",
}


def test_format_names_are_the_agreed_ones() -> None:
    assert FORMAT_NAMES == (
        "plain", "hosts", "spamhaus-drop", "spamhaus-json", "feodo-csv", "threatfox-csv",
        "urlhaus-csv", "misp-csv", "misp-json", "stix2", "rpz", "misp-warninglist",
    )


@pytest.mark.parametrize(("name", "fmt"), sorted(SAMPLES.items()))
def test_sniff_recognises_each_sample(name: str, fmt: str) -> None:
    assert sniff(read(name)) == fmt


@pytest.mark.parametrize(("name", "fmt"), sorted(SAMPLES.items()))
def test_auto_gives_the_same_as_the_declared_format(name: str, fmt: str) -> None:
    assert parse(read(name)) == parse(read(name), fmt)


def test_every_format_has_a_sample() -> None:
    assert set(SAMPLES.values()) == set(FORMAT_NAMES)


def test_plain_sample_with_bom_crlf_idn_comments_and_bad_lines() -> None:
    data = read("plain.txt")
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data  # the sample is what it claims
    parsed = parse(data, "plain")
    assert rows(parsed) == [
        v4("192.0.2.1", "4"),
        v4("198.51.100.0/24", "5"),
        v4("203.0.113.0/24", "6"),
        v6("2001:db8::dead:beef", "7"),
        v6("2001:db8:1::/48", "8"),
        d("evil.example", "9"),
        d("phish.example", "10", sub=True),
        d("malware.example", "11"),
        d("defanged.example", "12"),
        d("xn--bcher-kva.example", "13"),
        d("leading-space.example", "15"),
        d("last.example", "24"),
    ]
    assert rejects(parsed) == [
        ("16", "not a valid address or domain name: 1.2.3.999"),
        ("17", "not a value this format knows: evil.com;drop table"),
        ("18", "not a value this format knows: bad|name.example"),
        ("19", "not a value this format knows: \"quoted.example\""),
        ("20", "bad prefix length in 10.0.0.1/33"),
        ("21", "not a valid domain name: '-dash.example'"),
        ("22", "IPv6 address with a zone index: 2001:db8::1%eth0"),
        ("23", "line is not valid UTF-8 (byte 0xe9 at column 4)"),
    ]
    assert parsed.rejects[-1].text == "caf\ufffd.example"


def test_hosts_sample_skips_own_entries_and_reads_several_names() -> None:
    parsed = parse(read("hosts.txt"), "hosts")
    assert rows(parsed) == [
        d("ad.example", "21"),
        d("tracker.example", "22"),
        d("a.evil.example", "23"),
        d("b.evil.example", "23"),
        d("c.evil.example", "23"),
        d("xn--e1afmkfd.example", "24"),
        d("v6sink.example", "25"),
        d("under_score.example", "26"),
        d("indented.example", "27"),
        d("good.example", "31"),
    ]
    assert rejects(parsed) == [
        ("28", "host name is not a domain name: 1.2.3.4"),
        ("29", "hosts line needs an address and a name"),
        ("30", "hosts line does not start with an address: no-address.example"),
        ("31", "host name is not a domain name: bad!name.example"),
        ("32", "host name is not a domain name: evil.example#nospace"),
    ]


def test_spamhaus_drop_text_v4_and_v6() -> None:
    parsed = parse(read("spamhaus-drop.txt"), "spamhaus-drop")
    assert rows(parsed) == [
        v4("1.10.16.0/20", "5"),
        v4("192.0.2.0/24", "6"),
        v4("198.51.100.0/23", "7"),
        v4("203.0.113.128/25", "8"),
    ]
    assert rejects(parsed) == [
        ("9", "a DROP list holds only addresses and prefixes, not names: evil.example"),
        ("10", "not a valid ipv4 address: 300.1.0.0/16"),
    ]
    parsed = parse(read("spamhaus-dropv6.txt"), "spamhaus-drop")
    assert rows(parsed) == [
        v6("2001:db8:1000::/36", "5"),
        v6("2001:db8:2000::/36", "6"),
        v6("3fff:100::/29", "7"),
    ]
    assert rejects(parsed) == [("8", "not a valid ipv6 address: 2001:db8:zz::/48")]


def test_spamhaus_json_lines_skip_metadata() -> None:
    parsed = parse(read("spamhaus-drop.json"), "spamhaus-json")
    assert rows(parsed) == [
        v4("1.10.16.0/20", "1"),
        v4("192.0.2.0/24", "2"),
        v6("2001:db8:1000::/36", "3"),
        v4("198.51.100.0/24", "4"),
    ]
    assert rejects(parsed) == [
        ("5", "cidr is not an IP address or prefix: not-a-cidr"),
        ("6", "missing cidr"),
        ("7", "not a JSON object"),
        ("8", "cidr is not an IP address or prefix: evil.example"),
    ]


def test_feodo_csv_with_commented_header() -> None:
    parsed = parse(read("feodo.csv"), "feodo-csv")
    assert rows(parsed) == [
        v4("192.0.2.10", "10"),
        v4("198.51.100.23", "11"),
        v4("203.0.113.99", "12"),
        v6("2001:db8::c2", "13"),
    ]
    assert rejects(parsed) == [
        ("14", "not a valid address or domain name: 198.51.100.300"),
        ("15", "dst_ip is not an IP address or prefix: c2.evil.example"),
        ("16", "expected 6 columns, found 3"),
    ]


def test_threatfox_csv_types() -> None:
    parsed = parse(read("threatfox.csv"), "threatfox-csv")
    assert rows(parsed) == [
        v4("192.0.2.50", "10"),
        d("c2.evil-domain.example", "11"),
        d("payload.example", "12"),
        v6("2001:db8::50", "15"),
        d("xn--mnchen-update-wob.example", "17"),
        v6("2001:db8::51", "20"),  # "2001:db8::51:443" with type ip:port: the port is cut
    ]
    # hashes (lines 13, 14) and the unknown type (19) are skipped, not rejected
    assert rejects(parsed) == [
        ("16", "not a valid address or domain name: 999.1.2.3"),
        ("18", "domain value is not a domain name: bad domain.example"),
    ]


def test_urlhaus_csv_gives_hosts_and_keeps_line_numbers_after_a_multiline_field() -> None:
    parsed = parse(read("urlhaus.csv"), "urlhaus-csv")
    assert rows(parsed) == [
        v4("192.0.2.77", "10"),
        d("dl.malware-host.example", "11"),
        v6("2001:db8::77", "12"),
        d("xn--bcher-download-gsb.example", "13"),
        d("multi.example", "16"),
        d("after-multiline.example", "18"),
    ]
    assert rejects(parsed) == [
        ("14", "not a valid domain name: 'bad host.example'"),
        ("15", "no host in URL: http://"),
    ]


def test_certfr_misp_csv() -> None:
    parsed = parse(read("certfr-misp.csv"), "misp-csv")
    assert rows(parsed) == [
        v4("192.0.2.200", "2"),
        d("update-service.example", "3"),
        d("mail.update-service.example", "4"),
        d("c2.example", "5"),
        v4("198.51.100.200", "5"),
        v4("203.0.113.200", "6"),
        d("stage2.example", "7"),
        v6("2001:db8:bad::1", "12"),
        d("xn--socit-scurise-ehbbcf.example", "13"),
    ]
    # line 8 (sha256) is skipped; line 9 has signature.to_ids 0 and is skipped
    assert rejects(parsed) == [
        ("10", "domain value is not a domain name: mauvais domaine.example"),
        ("11", "domain|ip value needs 2 parts separated by '|'"),
        ("14", "ip-dst value is not an IP address or prefix: evil.example"),
    ]


def test_stock_misp_csv_to_ids_and_multiline_comment() -> None:
    parsed = parse(read("misp-export.csv"), "misp-csv")
    assert rows(parsed) == [
        v4("192.0.2.150", "2"),
        d("phish-login.example", "3"),
        v4("198.51.100.150", "6"),
        v4("203.0.113.150", "7"),
    ]
    # the link (to_ids 0, line 5), the filename (8) and 192.0.2.151 (to_ids False, 10) are skipped
    assert rejects(parsed) == [("9", "not a valid domain name: '-bad-.example'")]


def test_misp_event_json() -> None:
    parsed = parse(read("misp-event.json"), "misp-json")
    a1 = "a0000001-0000-4000-8000-00000000000"
    a2 = "a0000002-0000-4000-8000-00000000000"
    assert rows(parsed) == [
        v4("192.0.2.180", a1 + "1"),
        d("beacon.example", a1 + "2"),
        v4("198.51.100.180", a1 + "2"),
        v6("2001:db8::180", a1 + "3"),
        d("drop.example", a1 + "6"),
        d("xn--vil-sant-90ai.example", a1 + "8"),
        d("object-domain.example", a2 + "1"),
        v4("192.0.2.190", a2 + "2"),
    ]
    assert rejects(parsed) == [
        (a1 + "9", "domain value contains a control or invisible character"),
        ("a0000001-0000-4000-8000-000000000011",
         "not a valid address or domain name: 203.0.113.999"),
    ]
    assert parsed.rejects[0].text == "evil.example\\nsecond-line.example"
    values = {i.value for i in parsed.indicators}
    # to_ids false (link, "0"), deleted attribute, deleted object: none of them is enforced
    assert not values & {"blog.vendor.example", "203.0.113.181", "removed-false-positive.example",
                         "deleted-object.example"}


def test_stix2_bundle() -> None:
    parsed = parse(read("stix2-bundle.json"), "stix2")
    ind = "indicator--01000000-0000-4000-8000-00000000000"
    assert rows(parsed) == [
        d("c2.example", ind + "1", expires=FAR),
        v4("192.0.2.210", ind + "1", expires=FAR),
        v6("2001:db8::210", ind + "2", expires=PAST),  # expired: kept, the merger drops it
        d("exfil.example", ind + "2", expires=PAST),
        v4("198.51.100.210", ind + "5"),
        d("xn--mnchen-c2-q9a.example", ind + "9"),
    ]
    # 3 is revoked, 4 is a snort rule, 6 holds only LIKE / NOT = / ISSUBSET / file hash
    assert rejects(parsed) == [
        (ind + "7", "cannot read STIX pattern: unterminated string at column 22"),
        (ind + "8", "valid_until is not a timestamp: next tuesday"),
        (ind + "9", "ipv4-addr:value is not an IPv4 address or prefix: not-an-ip.example"),
    ]


def test_rpz_zone() -> None:
    parsed = parse(read("rpz.zone"), "rpz")
    got = [(i.type, i.value, i.subdomains, i.below, i.action, i.ref) for i in parsed.indicators]
    assert got == [
        ("domain", "evil.example", False, False, "", "13"),
        ("domain", "evil.example", True, True, "", "14"),  # `*.name`: below only
        ("domain", "tracker.example", False, False, "nodata", "15"),  # CNAME *.
        ("domain", "drop.example", False, False, "drop", "16"),
        ("domain", "walled.example", False, False, "", "17"),
        ("domain", "walled.example", False, False, "", "18"),  # owner carried to the AAAA line
        ("domain", "mixed-case.example", False, False, "", "19"),
        ("domain", "ok.example", False, False, "passthru", "20"),  # an exception, kept as such
        ("domain", "legacy-ok.example", False, False, "passthru", "21"),  # its legacy form
        ("domain", "abs.example", False, False, "", "23"),
        ("domain", "xn--80ak6aa92e.example", False, False, "", "24"),
        ("domain", "note.example", False, False, "", "25"),  # TXT local data answers instead
        ("domain", "redirect.example", False, False, "", "26"),
        ("ipv4", "192.0.2.7", False, False, "", "29"),
        ("ipv4", "198.51.100.0/24", False, False, "", "30"),
        ("ipv6", "2001:db8::1", False, False, "", "31"),
        ("ipv6", "2001:db8::/48", False, False, "drop", "32"),
    ]
    # tcp-only (22), client-ip/nsdname/nsip triggers (33-35) and the SOA/NS of the apex are no
    # policy to enforce
    assert rejects(parsed) == [
        ("38", "bad prefix length in 192.0.2.1/33"),
        ("39", "not a valid rpz-ip trigger: 1.2.3.rpz-ip"),
        ("40", "RPZ name is not a domain name: bad_name!.example"),
        ("41", "owner name is outside the zone rpz.cert.example"),
        ("42", "cannot read record: no record type"),
        ("43", "unsupported zone file directive $INCLUDE"),
    ]
    assert parsed.rejects[0].text == "33.1.2.0.192.rpz-ip"


def test_unknown_format_names_the_valid_ones() -> None:
    with pytest.raises(FormatError) as caught:
        parse(b"192.0.2.1\n", "csv")
    assert caught.value.reason == "format"
    assert "'csv'" in caught.value.what
    for name in ("auto", *FORMAT_NAMES):
        assert name in caught.value.hint


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("misp-json", b"<html><body>502 Bad Gateway</body></html>"),
        ("stix2", b'{"type": "bundle", "objects": [ {"type": '),
        ("stix2", b'{"type": "indicator", "pattern": "[ipv4-addr:value = \'192.0.2.1\']"}'),
        ("misp-json", b'{"name": "Not Found", "message": "Invalid event"}'),
        ("misp-json", b"42"),
        ("spamhaus-json", b"<html>rate limited</html>\n"),
        ("spamhaus-json", b""),
        ("feodo-csv", b'"2024-05-01","192.0.2.1","443","online","2024-05-01","Pikabot"\n'),
        ("threatfox-csv", b"# ThreatFox IOCs: CSV export\n# no header here\n"),
        ("urlhaus-csv", b""),
        ("misp-csv", b"192.0.2.1,ip-dst\n"),
        ("plain", b"\xff\xfe1\x009\x002\x00"),  # UTF-16 with its BOM
    ],
)
def test_unreadable_payload_is_a_format_error(fmt: str, payload: bytes) -> None:
    with pytest.raises(FormatError) as caught:
        parse(payload, fmt)
    assert caught.value.reason == "format"
    assert caught.value.hint


def test_empty_plain_hosts_and_rpz_payloads_are_empty_results() -> None:
    for fmt in ("plain", "hosts", "spamhaus-drop", "rpz"):
        assert parse(b"", fmt) == ((), ())
    assert parse(b'{"response": []}', "misp-json") == ((), ())
    assert parse(b'{"type": "bundle", "id": "bundle--1", "objects": []}', "stix2") == ((), ())
