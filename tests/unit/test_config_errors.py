"""Each kind of error, with file:line, key path, value and hint; and every problem of a file
reported at once, in file order."""

from __future__ import annotations

import base64

import pytest

from agent.config import ConfigProblems, loads
from agent.errors import ConfigError
from tests.config_helpers import KEY, feed_yaml, line_of, problems_of, y

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
