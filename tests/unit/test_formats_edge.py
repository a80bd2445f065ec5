"""Format parsers on hostile and unusual input: every bad line is one reject, never a crash."""

from __future__ import annotations

import gc
import json

import pytest

from agent.errors import FormatError
from agent.formats import parse, sniff
from agent.formats.stix2 import PatternError, equalities, tokenize
from agent.indicators import ParseResult


def values(parsed: ParseResult) -> list[str]:
    return [i.value for i in parsed.indicators]


def reasons(parsed: ParseResult) -> list[tuple[str, str]]:
    return [(r.ref, r.reason) for r in parsed.rejects]


# --- plain ------------------------------------------------------------------------------------


def test_thousand_line_plain_file_with_three_hostile_lines() -> None:
    lines = [f"host{n}.example" if n % 2 else f"192.0.2.{n % 250}" for n in range(1000)]
    lines[99] = "evil.example;rm -rf /"
    lines[499] = "$(reboot).example"
    lines[998] = "x" * 100_000
    parsed = parse(("\n".join(lines) + "\n").encode(), "plain")
    assert [r.ref for r in parsed.rejects] == ["100", "500", "999"]
    assert len(parsed.indicators) == 997
    assert all(len(r.text) <= 80 for r in parsed.rejects)


@pytest.mark.parametrize(
    "line",
    ["evil.com;drop table", "evil;com other.com", '"evil.com"', "'evil.com'", "evil.com\rx.com",
     "evil.com\x00", "ev\til.com", "evil.com\x1b[2J", "evil.com/../../etc", "évil.com\u2028x"],
)
def test_plain_rejects_names_with_separators_quotes_and_control_characters(line: str) -> None:
    parsed = parse(f"good.example\n{line}\n".encode(), "plain")
    assert values(parsed) == ["good.example"]
    assert [r.ref for r in parsed.rejects] == ["2"]
    reject = parsed.rejects[0]
    assert reject.reason.isprintable() and reject.text.isprintable()


def test_reject_text_escapes_terminal_sequences() -> None:
    document = event(attribute("1.2.3.4/24\x1b[31m", "ip-dst", uuid="u1"))
    parsed = parse(json.dumps(document).encode(), "misp-json")
    assert parsed.rejects[0].text == "1.2.3.4/24\\x1b[31m"
    parsed = parse(b"1.2.3.4\x1b[31m\n", "plain")
    assert parsed.rejects[0].reason == "value contains a control or invisible character"
    assert parsed.rejects[0].text == "1.2.3.4\\x1b[31m"


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("evil.example # trailing", "evil.example"),
        ("evil.example\t; trailing", "evil.example"),
        ("  192.0.2.9  ;SBL1", "192.0.2.9"),
        ("http://x.example/page#frag", "x.example"),
        ("http://y.example/a;b=c", "y.example"),
        (".dotted.example", "dotted.example"),
        ("trailing-tab.example\t", "trailing-tab.example"),
        ("\ttrailing-cr.example \r", "trailing-cr.example"),
    ],
)
def test_plain_trailing_comments_need_a_blank_before_them(line: str, value: str) -> None:
    assert values(parse(line.encode(), "plain")) == [value]


def test_only_the_line_with_bad_bytes_is_rejected() -> None:
    parsed = parse(b"a.example\n\xff\xfeb.example\nc.example\n# caf\xe9\n", "plain")
    assert values(parsed) == ["a.example", "c.example"]
    assert reasons(parsed) == [
        ("2", "line is not valid UTF-8 (byte 0xff at column 1)"),
        ("4", "line is not valid UTF-8 (byte 0xe9 at column 6)"),
    ]


def test_lines_end_only_at_line_feed() -> None:
    # form feed, vertical tab, NEL and U+2028 are not line ends: line numbers stay sed's
    text = "a.example\nb.example\x0cc\x0bd\x85e\u2028f.example\ng.example\n"
    parsed = parse(text.encode(), "plain")
    assert values(parsed) == ["a.example", "g.example"]
    assert [r.ref for r in parsed.rejects] == ["2"]


def test_hosts_accepts_tabs_crlf_and_ipv6_sinks() -> None:
    parsed = parse(b"0.0.0.0\tone.example\r\n::1 two.example ip6-localhost\r\n", "hosts")
    assert values(parsed) == ["one.example", "two.example"]


# --- CSV --------------------------------------------------------------------------------------

URLHAUS_HEAD = "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"


def urlhaus_row(url: str, tags: str = "elf") -> str:
    return f'"1","2024-05-01","{url}","online","","malware_download","{tags}","l","r"\n'


def test_csv_field_over_the_csv_limit_rejects_only_its_row() -> None:
    text = URLHAUS_HEAD + urlhaus_row("http://a.example/", "x" * 200_000)
    text += urlhaus_row("http://b.example/")
    parsed = parse(text.encode(), "urlhaus-csv")
    assert values(parsed) == ["b.example"]
    assert [r.ref for r in parsed.rejects] == ["2"]
    assert parsed.rejects[0].reason.startswith("unreadable CSV row")


def test_csv_with_bom_crlf_and_a_bad_byte_line() -> None:
    text = (URLHAUS_HEAD + urlhaus_row("http://a.example/") + urlhaus_row("http://b.example/"))
    data = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode().replace(b"b.example", b"b\xff.ex")
    parsed = parse(data, "urlhaus-csv")
    assert values(parsed) == ["a.example"]
    assert reasons(parsed) == [("3", "line is not valid UTF-8 (byte 0xff at column 27)")]


@pytest.mark.parametrize("url", ["http://a.example\nb.example/", "http://a.exa\tmple/x"])
def test_url_with_a_newline_or_tab_is_rejected_not_joined(url: str) -> None:
    # urllib drops tabs and newlines from URLs: "a.exa\tmple" would silently become a.example
    parsed = parse((URLHAUS_HEAD + urlhaus_row(url)).encode(), "urlhaus-csv")
    assert values(parsed) == []
    assert reasons(parsed) == [("2", "url contains a control or invisible character")]
    parsed = parse(url.replace("\n", "\v").replace("\t", "\v").encode(), "plain")  # tab: columns
    assert reasons(parsed) == [("1", "value contains a control or invisible character")]


def test_threatfox_hashes_are_skipped_without_reject() -> None:
    head = ('# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware",'
            '"malware_alias","malware_printable","last_seen_utc","confidence_level","reference",'
            '"tags","anonymous","reporter"\n')
    row = '"2024", "1", "{v}", "{t}", "c2", "m", "None", "M", "", "100", "None", "x", "0", "r"\n'
    text = head + row.format(v="abc", t="sha1_hash") + row.format(v="x", t="sha3_384_hash")
    text += row.format(v="192.0.2.1:80", t="IP:PORT")
    parsed = parse(text.encode(), "threatfox-csv")
    assert values(parsed) == ["192.0.2.1"]
    assert parsed.rejects == ()


def test_misp_csv_with_signature_component_type_column() -> None:
    text = ('signature_component.type,signature_component.value,signature_component.to_ids\n'
            'ip-dst,192.0.2.5,1\ndomain,x.example,0\nip-src|port,198.51.100.5|22,1\n')
    parsed = parse(text.encode())
    assert sniff(text.encode()) == "misp-csv"
    assert values(parsed) == ["192.0.2.5", "198.51.100.5"]


# --- MISP JSON --------------------------------------------------------------------------------


def attribute(value: object, kind: str = "domain", **extra: object) -> dict[str, object]:
    return {"uuid": f"u-{value}", "type": kind, "value": value, **extra}


def event(*attributes: dict[str, object]) -> dict[str, object]:
    return {"Event": {"uuid": "e1", "Attribute": list(attributes)}}


@pytest.mark.parametrize(
    ("flags", "kept"),
    [
        ({"to_ids": True, "deleted": False}, True),
        ({}, True),
        ({"to_ids": False}, False),
        ({"to_ids": "0"}, False),
        ({"to_ids": "False"}, False),
        ({"to_ids": "1", "deleted": "0"}, True),
        ({"deleted": True}, False),
        ({"deleted": "1"}, False),
        ({"to_ids": True, "deleted": True}, False),
    ],
)
def test_misp_to_ids_and_deleted(flags: dict[str, object], kept: bool) -> None:
    document = event({**attribute("x.example"), **flags})
    parsed = parse(json.dumps(document).encode(), "misp-json")
    assert values(parsed) == (["x.example"] if kept else [])
    assert parsed.rejects == ()


@pytest.mark.parametrize(
    "shape",
    [
        lambda e: e,
        lambda e: [e, e],
        lambda e: {"response": [e]},
        lambda e: {"response": {"Attribute": e["Event"]["Attribute"]}},
    ],
)
def test_misp_json_document_shapes(shape: object) -> None:
    document = shape(event(attribute("x.example")))  # type: ignore[operator]
    parsed = parse(json.dumps(document).encode())
    assert set(values(parsed)) == {"x.example"}


def test_misp_json_bad_attributes_are_rejects() -> None:
    document = {"Event": {"uuid": "e1", "Attribute": [
        attribute(None), attribute(42), attribute("a|b|c", "domain|ip"), "not an object",
        {"type": "ip-dst", "value": "192.0.2.300"}, attribute("ok.example", "HOSTNAME"),
        attribute("192.0.2.1", "ip-dst", uuid="\x1b[2J"),
    ]}}
    parsed = parse(json.dumps(document).encode(), "misp-json")
    assert [(i.value, i.ref) for i in parsed.indicators] == [
        ("ok.example", "u-ok.example"), ("192.0.2.1", "e1 Attribute[6]")]
    assert reasons(parsed) == [
        ("u-None", "missing domain value"),
        ("u-42", "domain value is not text: 42"),
        ("u-a|b|c", "domain|ip value needs 2 parts separated by '|'"),
        ("e1 Attribute[3]", "MISP attribute is not a JSON object"),
        ("e1 Attribute[4]", "not a valid address or domain name: 192.0.2.300"),
    ]


def test_misp_json_value_with_bad_bytes_is_a_reject() -> None:
    document = json.dumps(event(attribute("PLACEHOLDER", uuid="u1")))
    parsed = parse(document.encode().replace(b"PLACEHOLDER", b"x\xff.ex"), "misp-json")
    assert values(parsed) == []
    assert reasons(parsed) == [("u1", "domain value is not valid UTF-8")]
    assert parsed.rejects[0].text == "x\ufffd.ex"


def test_deeply_nested_json_is_a_format_error_not_a_crash() -> None:
    for fmt in ("misp-json", "stix2"):
        with pytest.raises(FormatError):
            parse(b"[" * 200_000, fmt)


# --- STIX -------------------------------------------------------------------------------------


def bundle(*objects: dict[str, object]) -> bytes:
    return json.dumps({"type": "bundle", "id": "bundle--1", "objects": list(objects)}).encode()


def indicator(pattern: str, **extra: object) -> dict[str, object]:
    return {"type": "indicator", "id": "indicator--1", "pattern": pattern, "pattern_type": "stix",
            **extra}


@pytest.mark.parametrize(
    ("pattern", "found"),
    [
        ("[ipv4-addr:value = '192.0.2.1']", [("ipv4-addr:value", "192.0.2.1")]),
        ("[url:value = 'http://x.example/it\\'s\\\\']", [("url:value", "http://x.example/it's\\")]),
        ("([domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']) "
         "REPEATS 2 TIMES WITHIN 60 SECONDS",
         [("domain-name:value", "a.example"), ("domain-name:value", "b.example")]),
        ("[ipv4-addr:value = '192.0.2.1'] START t'2024-01-01T00:00:00Z' "
         "STOP t'2024-02-01T00:00:00Z'", [("ipv4-addr:value", "192.0.2.1")]),
        ("[ipv4-addr:value != '192.0.2.1' AND ipv4-addr:value NOT = '192.0.2.2']", []),
        ("[domain-name:value IN ('a.example', 'b.example')]", []),
        ("[domain-name:value MATCHES '^evil']", []),
        ("[EXISTS domain-name:value AND domain-name:value = 'c.example']",
         [("domain-name:value", "c.example")]),
        ("[file:hashes.'SHA-256' = 'ab' AND file:size > 10]", [("file:hashes.'SHA-256'", "ab")]),
        ("[network-traffic:dst_ref.value = 'x.example' AND network-traffic:dst_port = 443]",
         [("network-traffic:dst_ref.value", "x.example")]),
        ("[artifact:payload_bin = b'AAAA' AND x:y = h'ff']", []),
    ],
)
def test_stix_pattern_equalities(pattern: str, found: list[tuple[str, str]]) -> None:
    assert equalities(pattern) == found


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("ipv4-addr:value = '192.0.2.1'", "comparison outside [ ]"),
        ("[ipv4-addr:value = '192.0.2.1'", "unbalanced brackets"),
        ("[ipv4-addr:value = '192.0.2.1']]", "unbalanced brackets"),
        ("[[ipv4-addr:value = '192.0.2.1']]", "unbalanced brackets"),
        ("[ipv4-addr:value '192.0.2.1']", "no operator and value after ipv4-addr:value"),
        ("[ipv4-addr:value =]", "no value after ipv4-addr:value ="),
        ("[ipv4-addr:value = AND]", "no value after ipv4-addr:value ="),
        ("[ipv4-addr:value = '1'] ; DROP", "unexpected ';' at column 25"),
        ("", "no [ ] observation expression"),
        ("__import__('os')", "no [ ] observation expression"),
    ],
)
def test_stix_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message.replace("[", r"\[").replace("]", r"\]")):
        equalities(pattern)


def test_stix_tokenizer_keeps_literal_prefixes() -> None:
    kinds = [(t.kind, t.text, t.prefix) for t in tokenize("[x:y = t'2024-01-01T00:00:00Z']")]
    assert kinds == [("punct", "[", ""), ("path", "x:y", ""), ("op", "=", ""),
                     ("string", "2024-01-01T00:00:00Z", "t"), ("punct", "]", "")]


def test_stix_revoked_non_stix_and_validity() -> None:
    parsed = parse(bundle(
        indicator("[domain-name:value = 'revoked.example']", revoked=True),
        indicator("[domain-name:value = 'sigma.example']", pattern_type="sigma"),
        indicator("[domain-name:value = 'kept.example']", revoked=False,
                  valid_until="2030-01-01T00:00:00.123456789Z"),
        indicator("[domain-name:value = 'naive.example']", valid_until="2020-01-01T00:00:00"),
        {"type": "indicator", "id": "indicator--20", "pattern": "[ipv4-addr:value = '192.0.2.1']"},
    ), "stix2")
    assert [(i.value, i.expires) for i in parsed.indicators] == [
        ("kept.example", 1893456000), ("naive.example", 1577836800), ("192.0.2.1", None)]
    assert parsed.rejects == ()


def test_stix_bad_objects_are_rejects() -> None:
    parsed = parse(bundle(
        "not an object",  # type: ignore[arg-type]
        {"type": "indicator", "id": "indicator--2", "pattern": ["list"], "pattern_type": "stix"},
        indicator("[domain-name:value = 'x.example']", valid_until=12345),
        indicator("[domain-name:value = '192.0.2.1' OR ipv6-addr:value = '192.0.2.1']"),
    ), "stix2")
    assert values(parsed) == []
    assert reasons(parsed) == [
        ("objects[0]", "STIX object is not a JSON object"),
        ("indicator--2", "indicator has no pattern"),
        ("indicator--1", "valid_until is not a timestamp: 12345"),
        ("indicator--1", "domain-name:value is not a domain name: 192.0.2.1"),
        ("indicator--1", "ipv6-addr:value is not an IPv6 address or prefix: 192.0.2.1"),
    ]


def test_stix_taxii_envelope_is_accepted() -> None:
    data = json.dumps({"more": False, "objects": [indicator("[url:value = 'x.example/a']")]})
    assert values(parse(data.encode(), "stix2")) == ["x.example"]


# --- RPZ --------------------------------------------------------------------------------------


def test_rpz_passthru_forms_are_exceptions_never_blocks() -> None:
    zone = (b"$ORIGIN rpz.example.\n"
            b"allow.example CNAME rpz-passthru.\n"
            b"old-allow.example CNAME old-allow.example.\n"
            b"32.1.2.0.192.rpz-ip CNAME rpz-passthru.\n"
            b"tcp.example CNAME rpz-tcp-only.\n"
            b"block.example CNAME .\n")
    parsed = parse(zone, "rpz")
    assert [(i.value, i.action) for i in parsed.indicators] == [
        ("allow.example", "passthru"), ("old-allow.example", "passthru"),
        ("192.0.2.1", "passthru"), ("block.example", "")]
    assert parsed.rejects == ()


def test_rpz_client_and_nameserver_triggers_never_become_addresses() -> None:
    zone = (b"$ORIGIN rpz.example.\n"
            b"32.5.2.0.192.rpz-client-ip CNAME rpz-drop.\n"
            b"32.6.2.0.192.rpz-nsip CNAME .\n"
            b"ns1.bad.example.rpz-nsdname CNAME .\n")
    assert parse(zone, "rpz") == ((), ())


def test_rpz_origin_from_soa_and_relative_origin() -> None:
    zone = (b"rpz.example. 300 IN SOA ns. host. (1 2 3 4 5)\n"
            b"a.example.rpz.example. CNAME .\n"
            b"$ORIGIN sub\n"
            b"b.example CNAME .\n"
            b"c.example.sub.rpz.example. CNAME .\n")
    parsed = parse(zone, "rpz")
    assert values(parsed) == ["a.example", "b.example", "c.example"]
    assert parsed.rejects == ()


def test_rpz_without_origin_takes_names_as_written() -> None:
    parsed = parse(b"evil.example CNAME .\nother.example. IN A 192.0.2.1\n", "rpz")
    assert values(parsed) == ["evil.example", "other.example"]


def test_rpz_quoted_text_and_unclosed_parenthesis() -> None:
    zone = (b'$ORIGIN rpz.example.\r\n'
            b'txt.example TXT "a ; b ( c"\r\n'
            b'after.example CNAME .\r\n'
            b'open.example CNAME ( .\r\n'
            b'never.example CNAME .\r\n')
    parsed = parse(zone, "rpz")
    assert values(parsed) == ["txt.example", "after.example"]  # TXT at a trigger: local data
    assert reasons(parsed) == [("4", "unclosed ( in record")]


def test_rpz_ipv6_trigger_forms() -> None:
    zone = (b"128.1.0.0.0.0.0.db8.2001.rpz-ip CNAME .\n"
            b"64.zz.1.db8.2001.rpz-ip CNAME .\n"
            b"128.zz.1.zz.2001.rpz-ip CNAME .\n"
            b"128.1.2.3.4.5.6.7.8.9.rpz-ip CNAME .\n")
    parsed = parse(zone, "rpz")
    assert values(parsed) == ["2001:db8::1", "2001:db8:1::/64"]
    assert [r.ref for r in parsed.rejects] == ["3", "4"]


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [
        (b"", "plain"),
        (b"\x00\x01\x02binary", "plain"),
        (b"192.0.2.1 # c2\n198.51.100.0/24 ; range\nevil.example\n", "plain"),
        (b"# just names\nevil.example\n*.bad.example\n", "plain"),
        (b"192.0.2.0/24 ; SBL1\n198.51.100.0/24 ; SBL2\n", "spamhaus-drop"),
        (b"0.0.0.0 a.example\n0.0.0.0 b.example\nc.example\n", "hosts"),
        (b":: a.example\n", "hosts"),
        (b"127.0.0.1 localhost\n::1 localhost ip6-loopback\n0.0.0.0 a.example\n", "hosts"),
        (b"192.0.2.1 botnet\n198.51.100.1 scanner\n", "plain"),
        (b'{"type":"metadata","timestamp":1}\n', "spamhaus-json"),
        (b'\xef\xbb\xbf{"cidr":"192.0.2.0/24","sblid":"SBL1","rir":"arin"}\n', "spamhaus-json"),
        (b'[{"Event": {"Attribute": []}}]', "misp-json"),
        (b'{"response": [{"Event": {}}]}', "misp-json"),
        (b'{"id": "bundle--1", "objects": [{"type": "indicator", "spec_version": "2.1"}]}',
         "stix2"),
        (b'{"objects": [{"pattern_type": "stix", "pattern": "[x:y = \'1\']"}], "more": false}',
         "stix2"),
        (b'{"some": "json"}', "plain"),
        (b"rpz.example. 300 IN SOA ns. host. 1 2 3 4 5\nevil.example CNAME .\n", "rpz"),
        (b"evil.example 300 IN CNAME .\n", "rpz"),
        (b"; zone\n$TTL 300\n", "rpz"),
        (b"$TTL 60\n@ SOA ns. h. (\n 1\n 2\n 3\n 4\n 5 )\n NS ns.\na.example CNAME .\n", "rpz"),
        (b"a.example\n$(reboot)\nb.example CNAME .\n192.0.2.1\n", "plain"),
        (b"a\nns\ncname\n", "plain"),
        (b"0.0.0.0 a\n0.0.0.0 ns\n", "hosts"),
        (b"uuid,event_id,category,type,value,comment,to_ids,date\n", "misp-csv"),
        (b"id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n",
         "urlhaus-csv"),
    ],
)
def test_sniff_edge_cases(payload: bytes, fmt: str) -> None:
    assert sniff(payload) == fmt


def test_sniff_looks_only_at_the_head_and_ignores_a_cut_line() -> None:
    head = b"0.0.0.0 a.example\n" * 500
    assert sniff(head + b"evil.example CNAME .\n" * 10) == "hosts"
    cut = b"x" * (8192 - 5) + b"\n0.0.0.0 a.example\n"
    assert sniff(cut) == "plain"


def test_plain_fast_path_gives_what_the_general_path_gives() -> None:
    pool = ["192.0.2.1", "192.0.2.1/24", "2001:DB8::1", "[2001:db8::1]:443", "1.2.3.999",
            "EVIL.example.", "*.w.example", ".d.example", "http://u.example:80/x?y=1", "hxxp://h.x",
            "a..b", "-x.example", "x" * 300, "1.2.3.4:8080", "::ffff:192.0.2.1", "a/b", "*.1.2.3.4",
            "", "http://", "xn--bcher-kva.example", "_dmarc.example", "0.0.0.0", "evil.example/"]
    bare = "\n".join(pool * 3) + "\n"
    fast = parse(bare.encode(), "plain")
    general = parse((bare + "# a comment sends the text down the general path\n").encode(), "plain")
    assert fast == general
    assert len(fast.indicators) > 20 and len(fast.rejects) > 10


def test_parse_restores_the_garbage_collector_state() -> None:
    assert gc.isenabled()
    parse(b"192.0.2.1\n")
    assert gc.isenabled()
    with pytest.raises(FormatError):
        parse(b"not json", "stix2")
    assert gc.isenabled()
    gc.disable()
    try:
        parse(b"192.0.2.1\n")
        assert not gc.isenabled()
    finally:
        gc.enable()
