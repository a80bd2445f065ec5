"""The configuration loader: what operators write, and what they are told when it is wrong.

Expected line numbers are found by searching the test's own YAML text for a marker, an oracle
independent of the loader (which walks the YAML node tree).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import textwrap
from pathlib import Path

import pytest

from agent import config as cfg
from agent.config import (
    Config,
    ConfigProblems,
    DnsConfig,
    FeedConfig,
    FirewallConfig,
    GuardConfig,
    IsolationConfig,
    load,
    loads,
    parse_duration,
    parse_size,
)
from agent.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "agent.yaml"
DATA = Path(__file__).resolve().parent / "data" / "config"
PUBLISHER_PUB = DATA / "publisher.pub"
PUBLISHER_KEY = "RWQEwzY9T/UGHX/gsW+Xha545MdsL4wxgOZNBj4JyeoUtwb/FtuGbrKk"
KEY = "RWSRFnNZD/Ff7i9l9xrfUW/N9p4syHC7ztZEauUZHkjVMnlnkvDI6sF6"
KEY2 = base64.b64encode(b"Ed" + bytes(range(40))).decode()


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, marker: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `marker`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) >= nth, f"marker {marker!r} not in test text"
    return hits[nth - 1]


def problems_of(text: str, path: str = "<string>") -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        loads(text, path)
    assert info.value.problems, "a ConfigProblems without problems"
    return info.value.problems


def feed_yaml(**extra: str) -> str:
    lines = [
        "feeds:",
        "  - name: cert",
        "    url: https://feeds.example.org/cert/manifest.json",
        f"    trusted_keys: [{KEY}]",
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The annotated example


def test_example_file_loads() -> None:
    config = load(EXAMPLE)
    assert config.path == str(EXAMPLE)
    example = config.feed("example")
    assert example is not None
    assert example.url.startswith("file:///usr/share/blocklist-agent/example-feed/")
    assert example.signature == "minisign" and example.trusted_keys == (KEY,)
    assert example.refresh == 900 and example.max_size == 256 * 1024 * 1024
    assert example.line == line_of(EXAMPLE.read_text(), "- name: example")
    assert config.firewall.backend == "nftables"
    assert config.guards.protected == ("10.0.0.0/8", "chu-example.fr", "sante.fr", "gouv.fr")
    assert config.isolation.peer("ch-voisin") == ("203.0.113.0/24",)


def test_example_documents_every_key() -> None:
    """An operator starts from this file: each setting must appear, set or commented out."""
    text = EXAMPLE.read_text()
    sections = {
        "": [f.name for f in dataclasses.fields(Config) if f.name not in ("path", "feeds")],
        "feeds": [f.name for f in dataclasses.fields(FeedConfig) if f.name != "line"],
        "guards": [f.name for f in dataclasses.fields(GuardConfig)],
        "firewall": [f.name for f in dataclasses.fields(FirewallConfig)],
        "dns": [f.name for f in dataclasses.fields(DnsConfig)],
        "isolation": [f.name for f in dataclasses.fields(IsolationConfig)],
    }
    missing = [
        f"{section}.{key}"
        for section, keys in sections.items()
        for key in keys
        if not re.search(rf"^[ #]*(- )?{key}:", text, re.MULTILINE)
    ]
    assert missing == []


def test_example_commented_settings_are_valid_too(tmp_path: Path) -> None:
    """Uncommenting the example's optional lines and feeds must give a loadable file."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cert-sante.pub").write_text(PUBLISHER_PUB.read_text())
    keys = "|".join(
        f.name for cls in (Config, FeedConfig, DnsConfig) for f in dataclasses.fields(cls)
    )
    out = []
    for line in EXAMPLE.read_text().splitlines():
        match = re.fullmatch(rf"(\s*)# ((- |  )?({keys}): .*)", line)
        out.append(match.group(1) + match.group(2) if match else line)
    text = "\n".join(out).replace("/etc/blocklist-agent/keys/cert-sante.pub", "keys/cert-sante.pub")
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    config = load(path)
    assert [feed.name for feed in config.feeds] == ["example", "cert-sante", "feodo"]
    cert = config.feed("cert-sante")
    assert cert is not None and cert.trusted_keys == (PUBLISHER_KEY,)
    assert cert.mirrors == ("https://mirror.example.net/cert-sante/manifest.json",)
    feodo = config.feed("feodo")
    assert feodo is not None and feodo.signature == "none" and feodo.format == "plain"
    assert config.metrics_file is not None and config.dns.server == "127.0.0.1:53"
    assert config.dns.control == "unbound-control -c /etc/unbound/unbound.conf"


# --------------------------------------------------------------------------------------------
# Valid files


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "feeds: []\n", "feeds:\n"])
def test_empty_file_or_no_feeds_is_valid(text: str) -> None:
    config = loads(text)
    assert config.feeds == ()
    assert config == Config(path="<string>")


def test_empty_sections_mean_defaults() -> None:
    config = loads("guards:\nfirewall:\ndns:\nisolation:\n")
    assert config.guards == GuardConfig()
    assert config.firewall == FirewallConfig()
    assert config.dns == DnsConfig()
    assert config.isolation == IsolationConfig()


def test_full_config_values_are_converted(tmp_path: Path) -> None:
    text = y(f"""
        state_dir: /srv/bla/state
        local_dir: /srv/bla/local.d
        metrics_file: /srv/metrics/bla.prom
        feeds:
          - name: cert-sante
            url: https://feeds.example.org/cert/manifest.json
            trusted_keys: ["{KEY}", "{KEY2}"]
            refresh: 1h30m
            max_size: 10MB
            timeout: 1m
            subdomains: true
            max_reject_ratio: 0
            mirrors: [https://mirror.example.net/cert/manifest.json, file:///srv/cert/manifest.json]
            ca_file: /etc/bla/ca.pem
          - name: feodo
            url: https://example.org/list.txt
            format: plain
            signature: none
        guards:
          min_prefix_v4: 16
          min_prefix_v6: 48
          max_change: 1
          protected: [10.1.2.3/8, Chu-Example.FR., "2001:db8::/32", "*.sante.fr", 192.0.2.1/32]
          allow_special: [100.64.0.0/10]
        firewall:
          backend: none
          table: bla_2
          lan_interfaces: [enp3s0, bond0.100]
          wan_interfaces: [wan0]
          management: [10.10.99.0/24, "2001:db8:99::1"]
          offender_timeout: 2h
          log_prefix: "BLA "
        dns:
          backend: dnsupdate
          zone: RPZ.Example
          zonefile: /srv/rpz.zone
          action: redirect:192.0.2.80
          control: rndc -k /etc/bind/rndc.key
          server: "[2001:db8::53]:5353"
          tsig_key_file: /etc/bla/tsig.key
          ttl: 60
          check: named-checkzone -q
          resolver: 127.0.0.1
        isolation:
          allow: [192.0.2.10/32, messagerie.mssante.fr]
          allow_feeds: true
          peers:
            ch-voisin: [203.0.113.0/24]
            clinique-2: [198.51.100.0/25, "2001:db8:2::/48"]
    """)
    config = loads(text)
    assert hash(config)  # frozen all the way down: lists became tuples
    cert, feodo = config.feeds
    assert cert == FeedConfig(
        name="cert-sante",
        url="https://feeds.example.org/cert/manifest.json",
        trusted_keys=(KEY, KEY2),
        refresh=5400,
        max_size=10_000_000,
        timeout=60,
        subdomains=True,
        max_reject_ratio=0.0,
        mirrors=("https://mirror.example.net/cert/manifest.json", "file:///srv/cert/manifest.json"),
        ca_file="/etc/bla/ca.pem",
        line=line_of(text, "- name: cert-sante"),
    )
    assert (feodo.signature, feodo.format, feodo.trusted_keys) == ("none", "plain", ())
    assert feodo.line == line_of(text, "- name: feodo")
    assert config.guards == GuardConfig(
        16,
        48,
        1.0,
        ("10.0.0.0/8", "chu-example.fr", "2001:db8::/32", "sante.fr", "192.0.2.1"),
        ("100.64.0.0/10",),
    )
    assert config.firewall == FirewallConfig(
        "none",
        "bla_2",
        ("enp3s0", "bond0.100"),
        ("wan0",),
        ("10.10.99.0/24", "2001:db8:99::1"),
        7200,
        "BLA ",
    )
    assert config.dns == DnsConfig(
        "dnsupdate",
        "rpz.example.",
        "/srv/rpz.zone",
        "redirect:192.0.2.80",
        "rndc -k /etc/bind/rndc.key",
        "[2001:db8::53]:5353",
        "/etc/bla/tsig.key",
        60,
        check="named-checkzone -q",
        resolver="127.0.0.1",
    )
    assert config.isolation.allow == ("192.0.2.10", "messagerie.mssante.fr")
    assert config.isolation.allow_feeds is True
    assert config.isolation.peers == (
        ("ch-voisin", ("203.0.113.0/24",)),
        ("clinique-2", ("198.51.100.0/25", "2001:db8:2::/48")),
    )
    assert config.metrics_file == "/srv/metrics/bla.prom"
    # Every setting was given a non-default value above: a field added to the dataclasses but
    # not read by the loader (accepted, then silently ignored) fails here.
    objects: list[object] = [config, config.guards, config.firewall, config.dns, config.isolation]
    for obj in objects:
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else (f.default)
            )
            assert getattr(obj, f.name) != default, f"{type(obj).__name__}.{f.name} not read"
    for f in dataclasses.fields(FeedConfig):
        if f.default is not dataclasses.MISSING:
            assert any(getattr(feed, f.name) != f.default for feed in config.feeds), f.name


def test_http_is_allowed_for_signed_feeds() -> None:
    config = loads(feed_yaml().replace("https://", "http://"))
    assert config.feeds[0].url.startswith("http://")


@pytest.mark.parametrize(
    "url", ["https://example.org/l.txt", "file:///srv/l.txt", "file://localhost/srv/l.txt"]
)
def test_unsigned_feed_over_https_or_file(url: str) -> None:
    config = loads(f"feeds:\n  - name: pub\n    url: {url}\n    signature: none\n")
    assert config.feeds[0].signature == "none"


@pytest.mark.parametrize(
    ("action", "stored"),
    [
        ("nxdomain", "nxdomain"),
        ("NODATA", "nodata"),
        ("drop", "drop"),
        ("redirect:Blocked.Example.FR", "redirect:blocked.example.fr"),
        ("redirect:2001:db8::80", "redirect:2001:db8::80"),
    ],
)
def test_dns_actions(action: str, stored: str) -> None:
    assert loads(f"dns:\n  action: {action}\n").dns.action == stored


def test_yaml_anchors_and_merge_keys() -> None:
    text = y(f"""
        x-signed: &signed
          trusted_keys: [{KEY}]
          refresh: 1h
        feeds:
          - name: one
            url: https://a.example/manifest.json
            <<: *signed
          - name: two
            url: https://b.example/manifest.json
            <<: *signed
            refresh: 2h
    """)
    one, two = loads(text).feeds
    assert one.trusted_keys == two.trusted_keys == (KEY,)
    assert (one.refresh, two.refresh) == (3600, 7200)  # a written key overrides a merged one


def test_yaml_1_1_words_are_taken_as_text() -> None:
    """`name: no` is a feed called "no", not the boolean false."""
    config = loads(
        "feeds:\n  - name: no\n    url: https://a.example/l\n    signature: none\n"
        "firewall:\n  table: 2024\n"
    )
    assert config.feeds[0].name == "no"
    assert config.firewall.table == "2024"


def test_duplicate_trusted_keys_are_kept_once() -> None:
    config = loads(feed_yaml().replace(f"[{KEY}]", f"[{KEY}, {KEY}]"))
    assert config.feeds[0].trusted_keys == (KEY,)


# --------------------------------------------------------------------------------------------
# Durations and sizes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("90", 90),
        (" 5m ", 300),
        ("0", 0),
        (120, 120),
        ("2 h", 7200),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "15 minutes",
        "",
        "m",
        "1.5h",
        "-5m",
        "15M",
        "1y",
        "2h-",
        "1:30",
        -1,
        True,
        "１５m",
        "99999999d",
    ],
)
def test_parse_duration_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"write 30s, 15m, 2h or 7d"):
        parse_duration(text)


def test_parse_duration_message_names_the_value() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("15 minutes")
    assert str(info.value) == "not a duration ('15 minutes'); write 30s, 15m, 2h or 7d"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 65536),
        ("256MiB", 256 * 2**20),
        ("1GiB", 2**30),
        ("10MB", 10_000_000),
        ("1kB", 1000),
        ("1KB", 1000),
        ("2TiB", 2 * 2**40),
        ("512", 512),
        ("512B", 512),
        (4096, 4096),
        ("16 MiB", 16 * 2**20),
        ("1mib", 2**20),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["64K", "1M", "1.5GiB", "lots", "", "-1", -1, "MiB", False, "10 MiB extra"]
)
def test_parse_size_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"write 64KiB, 256MiB, 1GiB or a number of bytes"):
        parse_size(text)


# --------------------------------------------------------------------------------------------
# Each kind of error: file:line, key path, value and hint

# (yaml text, marker of the expected line, expected message after "FILE:LINE: ")
ERROR_CASES = [
    (
        feed_yaml(refresh="15 minutes"),
        "refresh:",
        "feeds[0].refresh: not a duration ('15 minutes'); write 30s, 15m, 2h or 7d",
    ),
    (feed_yaml(refresh="30s"), "refresh:", "feeds[0].refresh: too short, the minimum is 60s"),
    (feed_yaml(refresh="1:30"), "refresh:", "feeds[0].refresh: not a duration ('1:30')"),
    (feed_yaml(max_size="lots"), "max_size:", "feeds[0].max_size: not a size ('lots')"),
    (feed_yaml(max_size="0"), "max_size:", "feeds[0].max_size: must be more than 0 bytes"),
    (feed_yaml(timeout="2d"), "timeout:", "feeds[0].timeout: too long"),
    (feed_yaml(format="csv"), "format:", "feeds[0].format: not one of manifest, auto"),
    (feed_yaml(signature="gpg"), "signature:", "feeds[0].signature: not one of minisign, none"),
    (
        feed_yaml(subdomains="maybe"),
        "subdomains:",
        "feeds[0].subdomains: expected true or false, found text ('maybe')",
    ),
    (
        feed_yaml(max_reject_ratio="1.5"),
        "max_reject_ratio:",
        "feeds[0].max_reject_ratio: must be from 0 to 1 ('1.5')",
    ),
    (
        feed_yaml(max_reject_ratio=".nan"),
        "max_reject_ratio:",
        "feeds[0].max_reject_ratio: must be from 0 to 1",
    ),
    (
        feed_yaml(mirrors="https://m.example/x"),
        "mirrors:",
        "feeds[0].mirrors: expected a list of URLs, found text",
    ),
    (
        feed_yaml(mirrors="[https://m.example/x, ftp://m.example/x]"),
        "mirrors:",
        "feeds[0].mirrors[1]: unsupported URL scheme ('ftp://m.example/x')",
    ),
    (feed_yaml(ca_file="~/ca.pem"), "ca_file:", "feeds[0].ca_file: '~' is not expanded here"),
    (
        feed_yaml().replace("name: cert", "name: CERT_Sante"),
        "name:",
        "feeds[0].name: not a valid feed name ('CERT_Sante') — use 1 to 63 lowercase letters",
    ),
    (
        feed_yaml().replace("name: cert", "name: -cert"),
        "name:",
        "feeds[0].name: not a valid feed name ('-cert')",
    ),
    (
        feed_yaml().replace("https://feeds", "ftp://feeds"),
        "url:",
        "feeds[0].url: unsupported URL scheme ('ftp://feeds.example.org/cert/manifest.json')",
    ),
    (
        feed_yaml().replace("https://feeds.example.org", "feeds.example.org"),
        "url:",
        "feeds[0].url: unsupported URL scheme ('feeds.example.org/cert/manifest.json') — "
        "start the URL with https://",
    ),
    (
        feed_yaml().replace("https://feeds.example.org", "https://"),
        "url:",
        "feeds[0].url: no host name in the URL",
    ),
    (
        feed_yaml().replace("https://feeds.example.org", "https://feeds.example.org:99999"),
        "url:",
        "feeds[0].url: not a valid URL",
    ),
    (
        feed_yaml().replace("https://feeds.example.org/cert", "file://srv/cert"),
        "url:",
        "feeds[0].url: a file:// URL needs an absolute path ('file://srv/cert/manifest.json')",
    ),
    (
        feed_yaml(signature="none")
        .replace("https://", "http://")
        .replace(f"    trusted_keys: [{KEY}]\n", ""),
        "url:",
        "feeds[0].url: unsigned feeds require https ('http://feeds.example.org/cert/manifest.json')",
    ),
    (
        feed_yaml(signature="none"),
        "trusted_keys:",
        "feeds[0].trusted_keys: keys are given but 'signature: none' turns verification off",
    ),
    (
        feed_yaml().replace(f"    trusted_keys: [{KEY}]\n", ""),
        "- name: cert",
        "feeds[0].trusted_keys: a signed feed needs at least one key",
    ),
    (
        feed_yaml().replace(f"[{KEY}]", "[]"),
        "trusted_keys:",
        "feeds[0].trusted_keys: a signed feed needs at least one key",
    ),
    (
        feed_yaml().replace(KEY, KEY[:-4] + "AAAA" + KEY[-4:]),
        "trusted_keys:",
        "feeds[0].trusted_keys[0]: not a minisign public key (decodes to 45 bytes, expected 42",
    ),
    (
        feed_yaml().replace(KEY, base64.b64encode(b"Xy" + bytes(40)).decode()),
        "trusted_keys:",
        "feeds[0].trusted_keys[0]: not a minisign public key (decodes to 42 bytes, expected 42 "
        "starting with 'Ed')",
    ),
    (
        feed_yaml().replace(KEY, KEY[:-1]),
        "trusted_keys:",
        "feeds[0].trusted_keys[0]: not a minisign public key (not valid base64)",
    ),
    (
        "feeds:\n  - name: a\n    signature: none\n",
        "- name: a",
        "feeds[0].url: missing — every feed needs the address",
    ),
    (
        "feeds:\n  - url: https://a.example/l\n    signature: none\n",
        "- url:",
        "feeds[0].name: missing — every feed needs a name",
    ),
    (
        "feeds:\n  cert:\n    url: https://a.example/l\n",
        "cert:",
        "feeds: expected a list of feeds (each starting with '- name:'), found a mapping",
    ),
    (
        "feeds:\n  - https://a.example/l\n",
        "- https",
        "feeds[0]: expected a feed (name:, url:, …), found text ('https://a.example/l')",
    ),
    (
        "guards:\n  min_prefix_v4: 33\n",
        "min_prefix_v4",
        "guards.min_prefix_v4: must be from 0 to 32 (33)",
    ),
    (
        "guards:\n  min_prefix_v6: 129\n",
        "min_prefix_v6",
        "guards.min_prefix_v6: must be from 0 to 128",
    ),
    (
        "guards:\n  min_prefix_v4: '8'\n",
        "min_prefix_v4",
        "guards.min_prefix_v4: expected a whole number, found text ('8')",
    ),
    (
        "guards:\n  min_prefix_v4: -1\n",
        "min_prefix_v4",
        "guards.min_prefix_v4: must be from 0 to 32",
    ),
    (
        "guards:\n  max_change: 0\n",
        "max_change",
        "guards.max_change: must be above 0 and at most 1",
    ),
    ("guards:\n  max_change: 50%\n", "max_change", "guards.max_change: expected a number"),
    (
        "guards:\n  protected: [10.0.0.0/8, 'bad name!']\n",
        "protected",
        "guards.protected[1]: not a valid domain name: 'bad name!' — write an address",
    ),
    (
        "guards:\n  protected:\n    - 10.0.0.0/33\n",
        "10.0.0.0/33",
        "guards.protected[0]: bad prefix length in 10.0.0.0/33",
    ),
    (
        "guards:\n  allow_special: [intranet.example]\n",
        "allow_special",
        "guards.allow_special[0]: not a valid ipv4 address: intranet.example",
    ),
    ("guards: [8, 32]\n", "guards", "guards: expected the guards settings, found a list"),
    (
        "firewall:\n  backend: nft\n",
        "backend",
        "firewall.backend: not one of nftables, none ('nft') — did you mean 'nftables'?",
    ),
    (
        "firewall:\n  table: blocklist-agent\n",
        "table",
        "firewall.table: not a valid nftables table name ('blocklist-agent')",
    ),
    (
        "firewall:\n  lan_interfaces: [lan0, averyveryverylong0]\n",
        "lan_interfaces",
        "firewall.lan_interfaces[1]: not a valid network interface name ('averyveryverylong0')",
    ),
    (
        "firewall:\n  wan_interfaces: ['wan 0']\n",
        "wan_interfaces",
        "firewall.wan_interfaces[0]: not a valid network interface name ('wan 0')",
    ),
    (
        "firewall:\n  wan_interfaces: [eth0/1]\n",
        "wan_interfaces",
        "firewall.wan_interfaces[0]: not a valid network interface name ('eth0/1')",
    ),
    (
        "firewall:\n  lan_interfaces: [lan0]\n  wan_interfaces: [wan0, lan0]\n",
        "wan_interfaces",
        "firewall.wan_interfaces: interface listed as both LAN and WAN ('lan0')",
    ),
    (
        "firewall:\n  management: [10.10.99.0/24, admin.example]\n",
        "management",
        "firewall.management[1]: not a valid ipv4 address: admin.example",
    ),
    (
        "firewall:\n  log_prefix: 'say \"hi\"'\n",
        "log_prefix",
        "firewall.log_prefix: not usable as an nftables log prefix",
    ),
    (
        "firewall:\n  log_prefix: " + "x" * 51 + "\n",
        "log_prefix",
        "firewall.log_prefix: not usable as an nftables log prefix",
    ),
    (
        "dns:\n  backend: powerdns\n",
        "backend",
        "dns.backend: not one of unbound, bind, knot-resolver, dnsupdate, none ('powerdns')",
    ),
    ("dns:\n  zone: rpz..example\n", "zone", "dns.zone: not a valid domain name"),
    (
        "dns:\n  action: block\n",
        "action",
        "dns.action: not one of nxdomain, nodata, drop, redirect:<address or name> ('block')",
    ),
    ("dns:\n  action: 'redirect:'\n", "action", "dns.action: not one of"),
    (
        "dns:\n  action: redirect:10.0.0.0/8\n",
        "action",
        "dns.action: bad redirect target: not a single address or name",
    ),
    ("dns:\n  action: redirect:bad_name!\n", "action", "dns.action: bad redirect target"),
    ("dns:\n  ttl: 5 minutes\n", "ttl", "dns.ttl: not a duration ('5 minutes')"),
    ("dns:\n  ttl: 4000w\n", "ttl", "dns.ttl: too long"),
    ("dns:\n  backend: dnsupdate\n", "backend", "dns.server: missing — the dnsupdate backend"),
    ("dns:\n  server: 192.0.2.53:99999\n", "server", "dns.server: not a server address: bad port"),
    ("dns:\n  server: '[ns1.example]:53'\n", "server", "dns.server: not a server address"),
    ("dns:\n  server: 192.0.2.0/24\n", "server", "dns.server: not a server address"),
    ("dns:\n  control: unbound-control -c '/etc/unbound/x.conf\n", "control",
     "dns.control: cannot be split into words: No closing quotation"),
    ("dns:\n  zonefile:\n", "zonefile", "dns.zonefile: expected text, found no value"),
    (
        "isolation:\n  allow: [192.0.2.10/32, 'essential service']\n",
        "allow",
        "isolation.allow[1]: not a valid domain name: 'essential service'",
    ),
    (
        "isolation:\n  allow: ['*.mssante.fr']\n",
        "allow",
        "isolation.allow[0]: a wildcard is not a single name: *.mssante.fr",
    ),
    (
        "guards:\n  protected: ['*.10.0.0.0/8']\n",
        "protected",
        "guards.protected[0]: wildcard on an address: *.10.0.0.0/8",
    ),
    (
        "isolation:\n  allow_feeds: yes please\n",
        "allow_feeds",
        "isolation.allow_feeds: expected true or false",
    ),
    (
        "isolation:\n  peers:\n    ch-voisin: [203.0.113.0/24, voisin.example]\n",
        "ch-voisin",
        "isolation.peers.ch-voisin[1]: not a valid ipv4 address: voisin.example",
    ),
    (
        "isolation:\n  peers:\n    ch-voisin: []\n",
        "ch-voisin",
        "isolation.peers.ch-voisin: no network given",
    ),
    (
        "isolation:\n  peers:\n    CH_Voisin: [203.0.113.0/24]\n",
        "CH_Voisin",
        "isolation.peers.CH_Voisin: not a valid peer name",
    ),
    (
        "isolation:\n  peers: [203.0.113.0/24]\n",
        "peers",
        "isolation.peers: expected a mapping of peer names to networks",
    ),
    ("state_dir: [a, b]\n", "state_dir", "state_dir: expected text, found a list"),
    ("state_dir: '  '\n", "state_dir", "state_dir: empty value"),
    (
        'state_dir: "/var/lib/x\\nrm -rf /"\n',
        "state_dir",
        "state_dir: contains a line break or control character",
    ),
    ("local_dir: ~/local.d\n", "local_dir", "local_dir: '~' is not expanded here ('~/local.d')"),
    ("- a\n- b\n", "- a", "expected a mapping of settings, found a list"),
]


@pytest.mark.parametrize(
    ("text", "marker", "message"),
    ERROR_CASES,
    ids=[case[2].split(":")[0] + "-" + str(i) for i, case in enumerate(ERROR_CASES)],
)
def test_error_kinds(text: str, marker: str, message: str) -> None:
    problems = problems_of(text, "agent.yaml")
    expected = f"agent.yaml:{line_of(text, marker)}: {message}"
    assert any(problem.startswith(expected) for problem in problems), problems


def test_error_line_is_the_value_line_in_a_realistic_file() -> None:
    """The example of the brief, with the line number written out by hand."""
    text = y("""
        state_dir: /var/lib/blocklist-agent
        feeds:
          - name: cert-sante
            url: https://feeds.example.org/cert-sante/manifest.json
            signature: none
          - name: feodo
            refresh: 15 minutes
            url: https://example.org/ipblocklist.txt
            signature: none
    """)
    assert problems_of(text, "agent.yaml") == [
        "agent.yaml:7: feeds[1].refresh: not a duration ('15 minutes'); write 30s, 15m, 2h or 7d",
    ]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    text = y(f"""
        feeds:
          - name: cert
            url: ftp://feeds.example.org/x
            trusted_keys: [{KEY}]
            refresh: 15 minutes
          - name: cert
            url: https://feeds.example.org/y
            trusted_keys: [{KEY}]
        guards:
          min_prefix_v4: 40
        dns:
          action: block
        firewal:
          backend: nftables
    """)
    with pytest.raises(ConfigError) as info:
        loads(text, "/etc/blocklist-agent/agent.yaml")
    error = info.value
    assert isinstance(error, ConfigProblems)
    assert error.exit_code == 2 and error.reason == "config"
    lines = [int(p.split(":")[1]) for p in error.problems]
    assert lines == sorted(lines)
    assert [p.split(": ")[1] for p in error.problems] == [
        "feeds[0].url",
        "feeds[0].refresh",
        "feeds[1].name",
        "guards.min_prefix_v4",
        "dns.action",
        "firewal",
    ]
    assert error.problems[2].startswith(
        f"/etc/blocklist-agent/agent.yaml:{line_of(text, '- name: cert', 2)}: feeds[1].name: "
        f"duplicate feed name ('cert') — also used by the feed on line {line_of(text, 'cert')}"
    )
    assert "did you mean 'firewall'?" in error.problems[-1]
    message = str(error)
    assert message.startswith("/etc/blocklist-agent/agent.yaml: 6 problems in the configuration")
    for problem in error.problems:
        assert problem in message
    assert "what to do:" in message


# --------------------------------------------------------------------------------------------
# Duplicate and unknown keys


def test_duplicate_top_level_key() -> None:
    text = "state_dir: /a\nlocal_dir: /b\nstate_dir: /c\n"
    assert problems_of(text, "agent.yaml") == [
        "agent.yaml:3: state_dir: duplicate key (also on line 1) — YAML silently keeps only the "
        "last one; remove one of the two"
    ]


def test_duplicate_key_inside_a_feed() -> None:
    """The dangerous case: the second `signature:` would silently win."""
    text = feed_yaml(signature="minisign") + "    signature: none\n"
    expected = (
        f"<string>:{line_of(text, 'signature: none')}: feeds[0].signature: duplicate key "
        f"(also on line {line_of(text, 'signature: minisign')})"
    )
    assert any(problem.startswith(expected) for problem in problems_of(text))


def test_duplicate_peer_name() -> None:
    text = "isolation:\n  peers:\n    a: [192.0.2.0/24]\n    a: [198.51.100.0/24]\n"
    assert problems_of(text)[0].startswith(
        "<string>:4: isolation.peers.a: duplicate key (also on line 3)"
    )


def test_unknown_key_with_suggestion() -> None:
    text = feed_yaml().replace("trusted_keys:", "trusted_key:")
    problems = problems_of(text)
    assert (
        f"<string>:{line_of(text, 'trusted_key:')}: feeds[0].trusted_key: "
        "unknown key — did you mean 'trusted_keys'?"
    ) in problems
    # ... and the feed then has no key, which is reported too, at the feed's first line
    assert any(
        p.startswith(
            f"<string>:{line_of(text, '- name:')}: feeds[0].trusted_keys: a signed "
            "feed needs at least one key"
        )
        for p in problems
    )
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ("gaurds:\n  max_change: 0.5\n", "gaurds", "did you mean 'guards'?"),
        ("guards:\n  min_prefix4: 8\n", "guards.min_prefix4", "did you mean 'min_prefix_v4'?"),
        (
            "firewall:\n  lan_interface: [lan0]\n",
            "firewall.lan_interface",
            "did you mean 'lan_interfaces'?",
        ),
        ("dns:\n  zone_file: /x\n", "dns.zone_file", "did you mean 'zonefile'?"),
        ("isolation:\n  alow: []\n", "isolation.alow", "did you mean 'allow'?"),
    ],
)
def test_unknown_keys_at_every_level(text: str, path: str, suggestion: str) -> None:
    assert problems_of(text) == [
        f"<string>:{line_of(text, path.split('.')[-1])}: {path}: unknown key — {suggestion}"
    ]


def test_unknown_key_without_close_match_lists_the_known_ones() -> None:
    (problem,) = problems_of("dns:\n  colour: blue\n")
    assert problem.startswith("<string>:2: dns.colour: unknown key — known keys here: backend, ")


def test_line_is_not_a_config_key() -> None:
    """FeedConfig.line is filled by the loader, never written by the operator."""
    (problem,) = problems_of(feed_yaml(line="3"))
    assert "feeds[0].line: unknown key" in problem


# --------------------------------------------------------------------------------------------
# YAML syntax


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("state_dir: /a\nfeeds:\n\t- name: x\n", 3, "use spaces"),
        ("guards:\n  protected: [10.0.0.0/8\nfirewall: {}\n", 3, "not valid YAML"),
        ("state_dir: /a\n---\nstate_dir: /b\n", 2, "one YAML document"),
        ("feeds: *nothing\n", 1, "anchor"),
        ("state_dir: /a\nlocal_dir: \x07\n", 2, "not allowed"),
        ("state_dir: '/a\n", 2, "not valid YAML"),
    ],
)
def test_yaml_syntax_errors_give_the_line(text: str, line: int, words: str) -> None:
    (problem,) = problems_of(text, "agent.yaml")
    assert problem.startswith(f"agent.yaml:{line}: not valid YAML")
    assert words in problem


# --------------------------------------------------------------------------------------------
# Paths


def test_relative_paths_are_resolved_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "agent.yaml"
    path.write_text(
        y("""
        state_dir: state
        local_dir: ./local.d
        metrics_file: ../metrics/agent.prom
        dns:
          zonefile: zones/rpz.zone
          tsig_key_file: tsig.key
        feeds:
          - name: own
            url: https://feeds.example.org/x
            signature: none
            ca_file: ca.pem
    """)
    )
    monkeypatch.chdir("/")  # the directory the agent happens to run in must not matter
    config = load(path)
    etc = tmp_path / "etc"
    assert config.state_dir == str(etc / "state")
    assert config.local_dir == str(etc / "local.d")
    assert config.metrics_file == str(tmp_path / "metrics" / "agent.prom")
    assert config.dns.zonefile == str(etc / "zones" / "rpz.zone")
    assert config.dns.tsig_key_file == str(etc / "tsig.key")
    assert config.feeds[0].ca_file == str(etc / "ca.pem")


def test_relative_config_path_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "agent.yaml").write_text("state_dir: st\nlocal_dir: /srv/local.d\n")
    monkeypatch.chdir(tmp_path)
    config = load("agent.yaml")
    assert config.path == "agent.yaml"
    assert config.state_dir == str(tmp_path / "st")
    assert config.local_dir == "/srv/local.d"


def test_loads_without_a_file_resolves_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert loads("state_dir: st\n").state_dir == str(tmp_path / "st")


def test_optional_paths_may_be_null() -> None:
    config = loads("metrics_file:\ndns:\n  control:\n  server:\n  tsig_key_file: null\n")
    assert config.metrics_file is None
    assert (config.dns.control, config.dns.server, config.dns.tsig_key_file) == (None,) * 3


# --------------------------------------------------------------------------------------------
# Trusted keys given as key files


def test_trusted_key_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cert.pub").write_text(PUBLISHER_PUB.read_text())
    path = tmp_path / "agent.yaml"
    path.write_text(feed_yaml().replace(f"[{KEY}]", f"[keys/cert.pub, {KEY}]"))
    feed = load(path).feeds[0]
    assert feed.trusted_keys == (PUBLISHER_KEY, KEY)  # the key lines, in the order given


def test_trusted_key_file_absolute_path() -> None:
    text = feed_yaml().replace(f"[{KEY}]", f"[{PUBLISHER_PUB}]")
    assert loads(text).feeds[0].trusted_keys == (PUBLISHER_KEY,)


def test_trusted_key_file_with_only_the_key_line(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text(f"\n{KEY2}\n")
    text = feed_yaml().replace(f"[{KEY}]", "[k.pub]")
    assert loads(text, str(tmp_path / "agent.yaml")).feeds[0].trusted_keys == (KEY2,)


def test_missing_trusted_key_file(tmp_path: Path) -> None:
    text = feed_yaml().replace(f"[{KEY}]", "[keys/gone.pub]")
    (problem,) = problems_of(text, str(tmp_path / "agent.yaml"))
    assert problem.startswith(
        f"{tmp_path}/agent.yaml:{line_of(text, 'trusted_keys')}: feeds[0].trusted_keys[0]: "
        f"neither a minisign public key nor an existing key file ('{tmp_path}/keys/gone.pub')"
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "untrusted comment: minisign encrypted secret key\nRWRTY0Iy" + "A" * 200 + "\n",
            "this is a minisign secret key",
        ),
        ("untrusted comment: minisign public key 1234\n", "the key file holds no key"),
        (
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",
            "the key file does not hold a minisign public key (not valid base64)",
        ),
    ],
)
def test_bad_trusted_key_file(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "k.pub").write_text(content)
    text = feed_yaml().replace(f"[{KEY}]", "[k.pub]")
    (problem,) = problems_of(text, str(tmp_path / "agent.yaml"))
    assert "feeds[0].trusted_keys[0]: " + words in problem


def test_trusted_key_file_whose_name_looks_like_base64(tmp_path: Path) -> None:
    name = "PublisherKeyRotatedInTwentyTwentySixSpring"
    (tmp_path / name).write_text(PUBLISHER_PUB.read_text())
    text = feed_yaml().replace(f"[{KEY}]", f"[{name}]")
    assert loads(text, str(tmp_path / "agent.yaml")).feeds[0].trusted_keys == (PUBLISHER_KEY,)


def test_trusted_key_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (problem,) = problems_of(
        feed_yaml().replace(f"[{KEY}]", "[keys]"), str(tmp_path / "agent.yaml")
    )
    assert "feeds[0].trusted_keys[0]: cannot read the key file" in problem


# --------------------------------------------------------------------------------------------
# load(): the file itself


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: no such configuration file\n  what to do: give the right "
                              "path with -c")
    assert info.value.problems[0].startswith(f"{path}: no such configuration file — ")
    assert info.value.exit_code == 2
    assert isinstance(info.value, ConfigProblems) and len(info.value.problems) == 1


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a directory, not a configuration file"):
        load(tmp_path)


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"state_dir: /var/lib/caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


def test_load_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: the test suite may run as root, which reads any file."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cfg, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match="permission denied") as info:
        load(tmp_path / "agent.yaml")
    assert "run the command as root" in str(info.value)


def test_load_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"\xef\xbb\xbfstate_dir: /srv/x\n")
    assert load(path).state_dir == "/srv/x"


def test_defaults_are_the_dataclass_defaults() -> None:
    """The loader must not invent its own defaults: one source of truth."""
    feed = loads(feed_yaml()).feeds[0]
    default = FeedConfig(name="x", url="y")
    for f in dataclasses.fields(FeedConfig):
        if f.name not in ("name", "url", "trusted_keys", "line"):
            assert getattr(feed, f.name) == getattr(default, f.name), f.name
    assert default.refresh >= cfg.MIN_REFRESH
