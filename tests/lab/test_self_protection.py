"""The guard rails that keep a gateway alive, in the namespace lab (docs/design.md §5, §9).

A real HTTPS feed server on "the internet" (ns wan) named `feeds.example` through a real
authoritative BIND and the gateway's Unbound; the agent runs in ns gw with real nft and the
Unbound RPZ backend; the gateway resolves through that Unbound (its /etc/resolv.conf, as `ip
netns exec` mounts it). Tests run in order on one gateway, like an operator's day: a feed lists
its own server and keeps updating, isolation leaves the lifeline open, a feed covering all of
public IPv4 is held, a protected name stays resolvable although a feed lists its address.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from agent.publish import minisign, publish
from lab import HTTP_PORT, Lab
from lab.httpserver import CertificateAuthority
from lab.resolvers import Server, addresses, query, start_authoritative, start_unbound
from tests.unit.test_guard_sums import covering_slash8s

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
FEED_NAME = "feeds.example"
PORTAL = "portail.example"  # a protected name: the hospital group's portal


@dataclass
class Gateway:
    lab: Lab
    root: Path
    key: minisign.SecretKey
    unbound: Server
    serial: int = 0

    def publish(self, *lines: str) -> None:
        self.serial += 1
        src = self.root / "src" / "indicators.txt"
        src.parent.mkdir(exist_ok=True)
        src.write_text("\n".join(lines) + "\n")
        publish([src], out_dir=self.root / "www" / "cert", key=self.key, publisher="lab CERT",
                serial=self.serial, expires=timedelta(days=1), feed="cert",
                now=datetime.now(UTC) - timedelta(minutes=1))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", sys.executable, "-m", "agent", "-c",
                            str(self.root / "agent.yaml"), *args, check=False, timeout=120)

    def sync(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.cli("sync", "--json", *args)
        return proc.returncode, dict(json.loads(proc.stdout))

    def nft_set(self, name: str) -> str:
        return self.lab.run("gw", "nft", "list", "set", "inet", "blocklist_agent", name).stdout

    def reaches(self, src: str, key: str, port: int = HTTP_PORT) -> bool:
        return self.lab.tcp_probe(src, self.lab.addr[key], port, timeout=0.8)


@pytest.fixture(scope="module")
def gw(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("selfprot")
    a = lab.addr
    ca = CertificateAuthority(root / "pki")
    cert, key = ca.issue([FEED_NAME])
    (root / "www").mkdir()
    lab.spawn("wan", sys.executable, "-m", "lab.feedserver", str(root / "www"), cert, key,
              a["feed"], "443", cwd=str(ROOT))
    zone = (f"$TTL 60\n@ SOA ns.example. h.example. 1 60 10 600 60\n@ NS ns.example.\n"
            f"ns A {a['dns']}\nfeeds A {a['feed']}\nportail A {a['site']}\n"
            f"c2 A {a['c2']}\n")
    rpz = root / "rpz.zone"
    with start_authoritative(lab, {"example.": zone}) as auth, start_unbound(
            lab, listen=[(a["gw_lan1"], 53)], upstream=(auth.address, 53),
            rpz_zonefile=rpz) as unbound:
        _, secret = minisign.generate_keypair()
        (root / "agent.yaml").write_text(f"""
state_dir: state
local_dir: local.d
feeds:
  - name: cert
    url: https://{FEED_NAME}/cert/manifest.json
    trusted_keys: ["{secret.public_key.to_text()}"]
    ca_file: {ca.cert_file}
guards:
  max_change: 1.0
  protected: [10.10.0.0/16, {PORTAL}]
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [wan0]
  management: [10.10.99.0/24, fd00:10:99::/64]
dns:
  backend: unbound
  zonefile: {rpz}
  control: {" ".join(unbound.control[4:])}
  resolver: {a['gw_lan1']}
""")
        # the gateway resolves through its Unbound: `ip netns exec` mounts this resolv.conf
        netns_etc = Path("/etc/netns") / lab.ns["gw"]
        netns_etc.mkdir(parents=True)
        (netns_etc / "resolv.conf").write_text(f"nameserver {a['gw_lan1']}\n")
        try:
            yield Gateway(lab, root, secret, unbound)
        finally:
            shutil.rmtree(netns_etc)
            lab.run("gw", "nft", "delete", "table", "inet", "blocklist_agent", check=False)


def test_a_feed_listing_its_own_server_keeps_updating(gw: Gateway) -> None:
    a = gw.lab.addr
    gw.publish(a["c2"], a["feed"], a["feed6"], FEED_NAME, "*.example")
    code, result = gw.sync()
    assert code == 0, result
    feed = result["feeds"][0]
    # its address and its name; the wildcard would also cover the protected portal
    assert feed["guard_rejects"] == {"lifeline": 2, "protected": 1}, feed
    details = " ".join(g["detail"] for g in feed["guard_samples"])
    assert f"{a['feed']}, feed server of cert ({FEED_NAME})" in details
    assert f"{FEED_NAME} is a lifeline of this gateway: feed server of cert" in details
    assert a["c2"] in gw.nft_set("v4") and a["feed"] not in gw.nft_set("v4")
    assert not gw.reaches("gw", "c2")
    assert gw.reaches("gw", "feed", 443)
    assert a["feed"] in addresses(query(gw.lab, "gw", a["gw_lan1"], FEED_NAME))
    why = json.loads(gw.cli("why", a["feed"], "--json").stdout)
    assert why["blocked"] is False
    assert any(g["reason"] == "lifeline" and "feed server of cert" in g["detail"]
               for g in why["guard"]), why
    assert "refused by guard rails (cert): " in gw.cli("why", a["feed"]).stdout
    # the publisher's next list still reaches the gateway
    gw.publish(a["c2"], a["feed"], "203.0.113.67")
    code, result = gw.sync()
    assert code == 0 and result["feeds"][0]["serial"] == 2, result
    assert "203.0.113.67" in gw.nft_set("v4")
    kept = json.loads((gw.root / "state" / "lifelines.json").read_text())
    assert kept["names"][FEED_NAME] == {a["feed"]: kept["names"][FEED_NAME][a["feed"]]}


def test_isolation_leaves_the_lifeline_open(gw: Gateway) -> None:
    proc = gw.cli("isolate", "--reason", "drill", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        assert not gw.reaches("gw", "site") and not gw.reaches("lan1", "site")
        assert gw.reaches("gw", "feed", 443)
        gw.publish(gw.lab.addr["c2"], "203.0.113.67", "203.0.113.68")
        code, result = gw.sync()
        assert code == 0 and result["feeds"][0]["serial"] == 3, result
    finally:
        restore = gw.cli("restore", "--reason", "drill over")
        assert restore.returncode == 0, restore.stdout + restore.stderr
    assert gw.reaches("lan1", "site")


def test_a_feed_covering_public_ipv4_is_held_before_the_kernel(gw: Gateway) -> None:
    before = gw.nft_set("v4_nets")
    gw.publish(gw.lab.addr["c2"], "203.0.113.67", "203.0.113.68", *covering_slash8s())
    code, result = gw.sync()
    assert code == 1 and result["result"] == "held"
    assert "more than guards.max_address_share (2.00%)" in result["plan"]["held"]
    assert "cert 100.00%" in result["plan"]["held"]
    assert gw.nft_set("v4_nets") == before
    assert gw.reaches("lan1", "site")
    assert "HELD" in gw.cli("status").stdout


def test_a_protected_name_keeps_resolving_although_a_feed_lists_its_address(
        gw: Gateway) -> None:
    a = gw.lab.addr
    lan_dns = a["gw_lan1"]
    assert a["site"] in addresses(query(gw.lab, "lan1", lan_dns, PORTAL))
    gw.publish(a["c2"], a["site"], "203.0.113.67")
    code, result = gw.sync()
    assert code == 0, result
    refused = [g for g in result["feeds"][0]["guard_samples"] if g["value"] == a["site"]]
    assert refused and refused[0]["reason"] == "protected"
    assert f"address of protected name {PORTAL}" in refused[0]["detail"]
    # rpz-ip holds the C2 address, not the portal's: the portal resolves, the C2 name does not
    zone = Path(gw.root / "rpz.zone").read_text()
    assert "32.66.113.0.203.rpz-ip" in zone and "32.10.113.0.203.rpz-ip" not in zone
    answer = query(gw.lab, "lan1", lan_dns, PORTAL)
    assert answer is not None and answer.rcode() == dns.rcode.NOERROR
    assert a["site"] in addresses(answer)
    c2 = query(gw.lab, "lan1", lan_dns, "c2.example")
    assert c2 is not None and c2.rcode() == dns.rcode.NXDOMAIN
    assert a["site"] not in gw.nft_set("v4") and gw.reaches("lan1", "site")
