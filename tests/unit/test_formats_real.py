"""Real lists read as their publishers mean them (issue 13): each case with a short excerpt of
the real shape (tests/data/formats), the value the audit found read wrongly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import FormatError
from agent.formats import parse, sniff
from agent.indicators import DROP, NODATA, PASSTHRU, ParseResult

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def values(parsed: ParseResult) -> list[str]:
    return [i.shown for i in parsed.indicators]


def reasons(parsed: ParseResult) -> list[tuple[str, str]]:
    return [(r.ref, r.reason) for r in parsed.rejects]


# --- plain: a value and more columns (stamparm/ipsum) -----------------------------------------


def test_ipsum_value_then_a_count_column_is_the_value() -> None:
    data = read("ipsum.txt")
    assert b"80.94.95.112\t10\n" in data  # the real shape: address, TAB, number of lists
    assert sniff(data) == "plain"
    parsed = parse(data)
    assert values(parsed) == ["80.94.95.112", "193.46.255.7", "45.221.64.242", "3.130.96.91",
                              "187.45.100.0", "1.55.33.86"]
    assert parsed.rejects == ()


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("198.51.100.7 2024-05-01 scanner", "198.51.100.7"),
        ("evil.example\tphishing\tsource-x", "evil.example"),
        ("198.51.100.0/24  ; a comment after columns", "198.51.100.0/24"),
        ("*.phish.example 3", "*.phish.example"),
    ],
)
def test_plain_first_column_is_the_value(line: str, value: str) -> None:
    parsed = parse(line.encode(), "plain")
    assert values(parsed) == [value] and parsed.rejects == ()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0.0.0.0 ads.example",
         "a hosts file line (a sink address, then names): set format: hosts"),
        ("blocked domains follow", "not a value this format knows: blocked domains follow"),
        # a no-break space is no column separator: the value holding it is refused whole
        ("evil\u00a0.example 3", "value contains a control or invisible character"),
    ],
)
def test_plain_lines_that_are_not_a_value_and_columns(line: str, reason: str) -> None:
    parsed = parse(line.encode(), "plain")
    assert values(parsed) == [] and reasons(parsed) == [("1", reason)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('local-zone: "evil.example" always_nxdomain',
         'not a value this format knows: local-zone: "evil.example" always_nxdomain'),
        ("md5:d41d8cd98f00b204e9800998ecf8427e",
         "not a value this format knows: md5:d41d8cd98f00b204e9800998ecf8427e"),
        ("||ads.example^", "not a value this format knows: ||ads.example^"),
        ("address=/ads.example/0.0.0.0",
         "not a value this format knows: address=/ads.example/0.0.0.0"),
        ("2001:db8::zz", "not a valid ipv6 address: 2001:db8::zz"),  # an address, mistyped
    ],
)
def test_values_of_another_syntax_are_named_so(line: str, reason: str) -> None:
    assert reasons(parse(line.encode(), "plain")) == [("1", reason)]


def test_typed_column_says_what_it_holds() -> None:
    head = '# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n'
    row = '"2024-05-01 00:00:00","md5:abc","443","online","2024-05-01","X"\n'
    parsed = parse((head + row).encode(), "feodo-csv")
    assert reasons(parsed) == [("2", "dst_ip is not an IP address or prefix: md5:abc")]


# --- hosts ------------------------------------------------------------------------------------


def test_hosts_names_starting_with_ip6_are_names() -> None:
    text = ("::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n"
            "ff02::2 ip6-allrouters\n0.0.0.0 ip6-tracker.example.com\n"
            "0.0.0.0 ip6-ads.example ip6-loopback\n")
    assert values(parse(text.encode(), "hosts")) == ["ip6-tracker.example.com", "ip6-ads.example"]


def test_hosts_fields_are_split_at_blanks_only() -> None:
    # "\u00a0.bank.example" must never become the wildcard ".bank.example"
    parsed = parse("0.0.0.0 a\u00a0.bank.example\n0.0.0.0 b.example\n".encode(), "hosts")
    assert values(parsed) == ["b.example"]
    assert reasons(parsed) == [("1", "host name contains a control or invisible character")]


def test_hosts_line_with_too_many_names_is_refused_whole() -> None:
    line = "0.0.0.0 " + " ".join(f"n{n}.example" for n in range(300))
    parsed = parse(f"{line}\n0.0.0.0 ok.example\n".encode(), "hosts")
    assert values(parsed) == ["ok.example"]
    assert reasons(parsed)[0][1].startswith("hosts line with 300 names, more than 256")


# --- MISP: `link` is a reference, never an indicator ------------------------------------------


def test_misp_csv_links_are_never_blocked_whatever_to_ids_says() -> None:
    parsed = parse(read("misp-link.csv"))  # citizenlab's export shape, sniffed as misp-csv
    assert values(parsed) == ["usacia.websecexp.example", "144.202.59.23"]  # url: to_ids 0
    assert parsed.rejects == ()


def test_misp_csv_without_to_ids_column_skips_links() -> None:
    parsed = parse(read("misp-link-no-to-ids.csv"), "misp-csv")
    assert values(parsed) == ["stage3.example", "relay.example"]


def test_misp_json_links_are_never_blocked() -> None:
    event = {"Event": {"uuid": "e1", "Attribute": [
        {"uuid": "a1", "type": "link", "to_ids": True, "value": "https://report.example.org/x"},
        {"uuid": "a2", "type": "url", "to_ids": True, "value": "http://c2.example/gate.php"},
        {"uuid": "a3", "type": "hostname|port", "to_ids": True, "value": "c3.example|8443"},
    ]}}
    parsed = parse(json.dumps(event).encode(), "misp-json")
    assert values(parsed) == ["c2.example", "c3.example"]


# --- RPZ: wildcard-only triggers, exceptions, actions ----------------------------------------


def test_rpz_wildcard_alone_covers_only_the_names_below() -> None:
    parsed = parse(b"*.only-subs.example CNAME .\n", "rpz")
    [ind] = parsed.indicators
    assert (ind.value, ind.subdomains, ind.below) == ("only-subs.example", True, True)
    assert ind.to_dict()["below_only"] is True


def test_hagezi_rpz_of_wildcards_only() -> None:
    parsed = parse(read("hagezi-spam-tlds.rpz"))
    assert sniff(read("hagezi-spam-tlds.rpz")) == "rpz"
    assert [(i.value, i.below) for i in parsed.indicators] == [
        ("actor", True), ("apartments", True), ("dpdns.org", True), ("qzz.io", True),
        ("sa.com", True)]
    assert parsed.rejects == ()


def test_googleapis_restricted_zone_keeps_its_exception() -> None:
    parsed = parse(read("googleapis-restricted.rpz"), "rpz")
    got = [(i.value, i.subdomains, i.below, i.action, i.ref) for i in parsed.indicators]
    assert got == [
        ("googleapis.com", True, True, "", "6"),  # a CNAME elsewhere: local data, a block
        ("restricted.googleapis.com", False, False, PASSTHRU, "7"),
    ]


def test_rpz_actions_kept_where_the_format_says() -> None:
    zone = (b"$ORIGIN rpz.example.\n"
            b"drop.example CNAME rpz-drop.\n"
            b"nodata.example CNAME *.\n"
            b"*.wild-drop.example CNAME rpz-drop.\n"
            b"nx.example CNAME .\n"
            b"walled.example CNAME garden.example.\n"
            b"txt.example TXT \"blocked; ticket (12)\"\n"
            b"relative-drop.example CNAME rpz-drop\n")
    parsed = parse(zone, "rpz")
    assert [(i.shown, i.action) for i in parsed.indicators] == [
        ("drop.example", DROP), ("nodata.example", NODATA), ("*.wild-drop.example", DROP),
        ("nx.example", ""), ("walled.example", ""), ("txt.example", ""),
        ("relative-drop.example", DROP)]


def test_rpz_ip_trigger_without_prefix_length_says_so() -> None:
    parsed = parse(b"1.0.218.230.rpz-ip CNAME .\n", "rpz")
    assert parsed.indicators == ()
    assert reasons(parsed)[0][1].startswith("rpz-ip trigger without its prefix length")


def test_rpz_refuses_what_is_no_trigger() -> None:
    zone = b"* CNAME .\n*.32.1.2.0.192.rpz-ip CNAME .\n.x.example CNAME .\n"
    assert reasons(parse(zone, "rpz")) == [
        ("1", "a wildcard trigger for every name of the zone"),
        ("2", "a wildcard on an rpz-ip trigger"),
        ("3", "owner name with an empty label"),
    ]


# --- Spamhaus DROPv6 ---------------------------------------------------------------------------


def test_dropv6_slash_29_allocations_are_read() -> None:
    parsed = parse(read("spamhaus-dropv6-29.txt"))
    assert values(parsed) == ["2a06:5280::/29", "2a06:f680::/29", "2a07:9b80::/29",
                              "2607:d100::/32"]


# --- JSON: nesting bounded, never a RecursionError ---------------------------------------------


@pytest.mark.parametrize("fmt", ["misp-json", "stix2", "auto"])
def test_json_nested_100k_deep_is_a_format_error(fmt: str) -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    if fmt == "auto":  # sniffed on its first 8 KB, read as what it is: nothing
        parsed = parse(data, fmt)
        assert parsed.indicators == ()
        return
    with pytest.raises(FormatError) as caught:
        parse(data, fmt)
    assert "nests" in caught.value.what


def test_spamhaus_json_deep_line_is_one_reject() -> None:
    data = b"[" * 100_000 + b"\n" + b'{"cidr": "192.0.2.0/24"}\n'
    parsed = parse(data, "spamhaus-json")
    assert values(parsed) == ["192.0.2.0/24"]
    assert reasons(parsed) == [("1", "not a JSON object")]


def test_json_value_of_the_wrong_kind_is_named_without_printing_it() -> None:
    deep: object = "x"
    for _ in range(900):  # below the reader's limit, far above what repr() could print here
        deep = [deep]
    event = {"Event": {"uuid": "e1", "Attribute": [
        {"uuid": "a1", "type": "ip-dst", "to_ids": True, "value": deep}]}}
    parsed = parse(json.dumps(event).encode(), "misp-json")
    assert reasons(parsed) == [("a1", "ip-dst value is not text: a JSON list of 1 items")]
