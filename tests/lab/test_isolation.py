"""The kill switch in the namespace lab: two LANs, a management subnet, and a WAN side with an
essential service, an ordinary internet host and a peer hospital (docs/design.md §8, §9).

Real `blocklist-agent isolate/restore` in the gateway namespace; real TCP probes and a held
TCP connection prove what is cut and what stays open. Tests run in order on one lab.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import ECHO_PORT, HTTP_PORT, Lab

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

ESSENTIAL_NAME = "teleradiologie.lab.example"
ESSENTIAL_BY_NAME = "203.0.113.21"  # every address of 203.0.113.0/24 answers in the lab


@dataclass
class Gateway:
    lab: Lab
    root: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.lab.run("gw", sys.executable, "-m", "agent", "-c",
                            str(self.root / "agent.yaml"), *args, check=False, timeout=60)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json", check=False).stdout))

    def can(self, src: str, dst: str, port: int = HTTP_PORT) -> bool:
        return self.lab.tcp_probe(src, self.lab.addr[dst], port, timeout=0.7)

    def inbound(self, src_addr_key: str, dst: str) -> bool:
        return self.lab.tcp_probe("wan", self.lab.addr[dst], HTTP_PORT, timeout=0.7,
                                  src_addr=self.lab.addr[src_addr_key])


@pytest.fixture(scope="module")
def gw(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("iso")
    (root / "agent.yaml").write_text("""
state_dir: state
local_dir: local.d
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [wan0]
  management: [10.10.99.0/24, fd00:10:99::/64]
dns:
  backend: none
isolation:
  allow: [203.0.113.20, "2001:db8:200::20", teleradiologie.lab.example]
  peers:
    ch-voisin: [203.0.113.128/25, "2001:db8:200:80::/64"]
""")
    # name resolution inside the gateway namespace only: `ip netns exec` bind-mounts these
    netns_etc = Path("/etc/netns") / lab.ns["gw"]
    netns_etc.mkdir(parents=True)
    (netns_etc / "hosts").write_text(f"127.0.0.1 localhost\n{ESSENTIAL_BY_NAME} {ESSENTIAL_NAME}\n")
    (netns_etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    try:
        yield Gateway(lab, root)
    finally:
        shutil.rmtree(netns_etc)


def test_before_isolation_everything_flows(gw: Gateway) -> None:
    for src, dst in (("lan1", "site"), ("lan1", "site6"), ("lan1", "peer"), ("lan2", "lan1"),
                     ("mgmt", "site"), ("gw", "site")):
        assert gw.can(src, dst), f"{src} -> {dst}"


def test_isolation_works_with_no_feed_and_no_daemon(gw: Gateway) -> None:
    """Fresh state dir, no table in the kernel, no daemon: isolate must still cut."""
    held = gw.lab.open_connection("lan1", gw.lab.addr["site"], ECHO_PORT)
    assert held.alive()
    proc = gw.cli("isolate", "--reason", "drill: ransomware at CH voisin", "--yes")
    assert "ISOLATED" in proc.stdout and "203.0.113.20" in proc.stdout
    assert ESSENTIAL_NAME in proc.stdout
    try:
        assert not held.alive(timeout=1.0), "an established connection must be cut too"
    finally:
        held.close()


@pytest.mark.parametrize(
    ("src", "dst", "open_"),
    [
        ("lan1", "site", False), ("lan1", "site6", False), ("lan2", "site", False),
        ("gw", "site", False), ("gw", "site6", False), ("lan1", "peer", False),
        ("lan1", "lan2", True), ("lan2", "lan1", True), ("lan1", "lan26", True),
        ("mgmt", "site", True), ("mgmt", "site6", True),
        ("lan1", "essential", True), ("lan1", "essential6", True), ("gw", "essential", True),
    ],
)
def test_during_isolation(gw: Gateway, src: str, dst: str, open_: bool) -> None:
    assert gw.can(src, dst) is open_, f"{src} -> {dst} should be {'open' if open_ else 'cut'}"


def test_allowlisted_name_resolved_at_isolation_stays_open(gw: Gateway) -> None:
    assert gw.lab.tcp_probe("lan1", ESSENTIAL_BY_NAME, HTTP_PORT, timeout=0.7)
    assert not gw.lab.tcp_probe("lan1", "203.0.113.22", HTTP_PORT, timeout=0.7)


def test_inbound_from_the_internet_is_cut_but_not_from_essential(gw: Gateway) -> None:
    assert not gw.inbound("site", "lan1")
    assert gw.inbound("essential", "lan1")
    # from the WAN side, only replies to what management hosts started come back (issue 11):
    # a connection opened from the internet towards management is cut like any other
    assert not gw.inbound("site", "mgmt")


def test_status_shows_isolation_first(gw: Gateway) -> None:
    proc = gw.cli("status", check=False)
    assert proc.stdout.startswith("ISOLATED since")
    assert "drill: ransomware at CH voisin" in proc.stdout
    iso = gw.status()["isolation"]
    assert iso["active"] and iso["reason"] == "drill: ransomware at CH voisin"
    assert iso["resolved"] == {ESSENTIAL_NAME: [ESSENTIAL_BY_NAME]}


def test_enforced_nft_restores_isolation_after_a_flush(gw: Gateway) -> None:
    gw.lab.run("gw", "nft", "flush", "ruleset")
    assert gw.can("lan1", "site")
    gw.lab.run("gw", "nft", "-f", str(gw.root / "state" / "enforced.nft"))
    assert not gw.can("lan1", "site")
    assert gw.can("lan1", "essential") and gw.can("lan1", "lan2")


def test_restore_reopens_and_is_audited(gw: Gateway) -> None:
    proc = gw.cli("restore", "--reason", "drill over")
    assert "not isolated" in proc.stdout
    for src, dst in (("lan1", "site"), ("lan1", "site6"), ("gw", "site"), ("lan1", "peer")):
        assert gw.can(src, dst), f"{src} -> {dst}"
    history = [json.loads(line) for line in
               (gw.root / "state" / "history.jsonl").read_text().splitlines()]
    events = [(h["event"], h["reason"]) for h in history]
    assert ("isolate", "drill: ransomware at CH voisin") in events
    assert ("restore", "drill over") in events
    assert all(h["by"] for h in history)


def test_peer_quarantine_cuts_only_the_peer_both_ways(gw: Gateway) -> None:
    gw.cli("isolate", "--peer", "ch-voisin", "--reason", "CH voisin hit", "--yes")
    assert not gw.can("lan1", "peer")
    assert not gw.can("lan1", "peer6")
    assert not gw.inbound("peer", "lan1")
    assert gw.can("lan1", "site") and gw.can("lan1", "site6")
    assert "QUARANTINED peer ch-voisin" in gw.cli("status", check=False).stdout
    gw.cli("restore", "--peer", "ch-voisin", "--reason", "CH voisin clean")
    assert gw.can("lan1", "peer")


def test_unknown_peer_is_a_usage_error(gw: Gateway) -> None:
    proc = gw.cli("isolate", "--peer", "nobody", "--reason", "x", "--yes", check=False)
    assert proc.returncode == 2 and "ch-voisin" in proc.stderr


def test_break_glass_isolates_with_plain_nft(gw: Gateway) -> None:
    glass = gw.root / "state" / "break-glass.nft"
    assert "undo:" in glass.read_text()
    gw.lab.run("gw", "nft", "flush", "ruleset")
    gw.lab.run("gw", "nft", "-f", str(glass))
    assert not gw.can("lan1", "site")
    assert gw.can("lan1", "essential") and gw.can("mgmt", "site") and gw.can("lan1", "lan2")
    gw.lab.run("gw", "nft", "flush", "set", "inet", "blocklist_agent", "iso_wan")  # its undo
    assert gw.can("lan1", "site")


def test_deadline_lifts_isolation_by_itself(gw: Gateway) -> None:
    gw.cli("isolate", "--for", "2s", "--reason", "short drill", "--yes")
    assert not gw.can("lan1", "site")
    time.sleep(2.5)
    assert gw.can("lan1", "site"), "the kernel element timeout lifts isolation"
    history = gw.root / "state" / "history.jsonl"
    before = history.read_text()
    iso = gw.status()["isolation"]
    assert not iso["active"] and iso["lifted_by"] == "deadline"
    assert history.read_text() == before, "status is read-only: it records nothing"
    gw.cli("restore", "--reason", "after the drill")  # the next change records the lift once
    assert history.read_text().count('"by": "deadline"') == 1
