"""Valid files: the annotated example operators start from (it must load, document every key and
stay valid with its optional lines uncommented), what each setting becomes once read (tuples,
canonical addresses, seconds, bytes), and the defaults, which are the dataclasses' own."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from agent import config as cfg
from agent.config import (
    Config,
    DnsConfig,
    FeedConfig,
    FirewallConfig,
    GuardConfig,
    IsolationConfig,
    load,
    loads,
)
from tests.config_helpers import (
    EXAMPLE,
    KEY,
    KEY2,
    PUBLISHER_KEY,
    PUBLISHER_PUB,
    feed_yaml,
    line_of,
    y,
)

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
    (tmp_path / "keys" / "soc.pub").write_text(PUBLISHER_PUB.read_text())
    keys = "|".join(
        f.name for cls in (Config, FeedConfig, DnsConfig) for f in dataclasses.fields(cls)
    )
    out = []
    for line in EXAMPLE.read_text().splitlines():
        match = re.fullmatch(rf"(\s*)# ((- |  )?({keys}): .*)", line)
        out.append(match.group(1) + match.group(2) if match else line)
    text = "\n".join(out).replace("/etc/blocklist-agent/keys/", "keys/")
    for secret in ("cert-sante.key", "vendor-cti.auth"):  # credential files: root's, 0600
        (tmp_path / secret).write_text("secret\n")
        (tmp_path / secret).chmod(0o600)
        text = text.replace(f"/etc/blocklist-agent/{secret}", str(tmp_path / secret))
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    config = load(path)
    assert [feed.name for feed in config.feeds] == [
        "example", "cert-sante", "soc-list", "cert-sante-misp", "vendor-cti", "known-good",
        "feodo"]
    soc = config.feed("soc-list")
    assert soc is not None and soc.max_age == 2 * 86400 and soc.format == "plain"
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
        sync_timeout: 2m
        max_sync_bytes: 64MiB
        max_sync_indicators: 500000
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
            max_indicators: 5000
          - name: feodo
            url: https://example.org/list.txt
            format: plain
            signature: none
            role: allow
          - name: misp
            source: misp
            url: https://misp.example.org
            auth_file: {tmp_path / "misp.key"}
            filters: {{tags: [tlp:green]}}
          - name: soc-list
            url: https://example.org/c2.txt
            format: plain
            trusted_keys: ["{KEY}"]
            max_age: 2d
          - name: dropv6
            url: https://www.spamhaus.org/drop/dropv6.txt
            format: spamhaus-drop
            signature: none
            min_prefix_v4: 12
            min_prefix_v6: 29
        guards:
          min_prefix_v4: 16
          min_prefix_v6: 48
          max_change: 1
          protected: [10.1.2.3/8, Chu-Example.FR., "2001:db8::/32", "*.sante.fr", 192.0.2.1/32]
          allow_special: [100.64.0.0/10]
          max_address_share: 0.1
          lifeline_except: [192.0.2.53, pool.ntp.org]
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
    (tmp_path / "misp.key").write_text("secret\n")
    (tmp_path / "misp.key").chmod(0o600)
    config = loads(text)
    assert hash(config)  # frozen all the way down: lists became tuples
    cert, feodo, _misp, soc, dropv6 = config.feeds
    assert (soc.format, soc.max_age) == ("plain", 2 * 86400)
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
        max_indicators=5000,
        line=line_of(text, "- name: cert-sante"),
    )
    assert (feodo.signature, feodo.format, feodo.trusted_keys) == ("none", "plain", ())
    assert feodo.line == line_of(text, "- name: feodo")
    assert (feodo.min_prefix_v4, feodo.min_prefix_v6) == (None, None)  # the guards' then
    assert (dropv6.min_prefix_v4, dropv6.min_prefix_v6) == (12, 29)
    assert config.guards == GuardConfig(
        16,
        48,
        1.0,
        ("10.0.0.0/8", "chu-example.fr", "2001:db8::/32", "sante.fr", "192.0.2.1"),
        ("100.64.0.0/10",),
        0.1,
        ("192.0.2.53", "pool.ntp.org"),
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
    assert (config.sync_timeout, config.max_sync_bytes, config.max_sync_indicators) == (
        120, 64 * 1024 * 1024, 500_000)
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



def test_defaults_are_the_dataclass_defaults() -> None:
    """The loader must not invent its own defaults: one source of truth."""
    feed = loads(feed_yaml()).feeds[0]
    default = FeedConfig(name="x", url="y")
    for f in dataclasses.fields(FeedConfig):
        if f.name not in ("name", "url", "trusted_keys", "line"):
            assert getattr(feed, f.name) == getattr(default, f.name), f.name
    assert default.refresh >= cfg.MIN_REFRESH
