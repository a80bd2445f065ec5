"""The gateway's lifelines and protected names' addresses: found in real configuration files,
resolved with a deadline, kept, and refused as block targets with the guard named."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.config import loads
from agent.guards import LIFELINE, PROTECTED, Policy
from agent.hostinfo import Server, system_servers
from agent.indicators import Indicator
from agent.lifelines import KEEP_FOR, Facts, configured, gather, kept, resolve_all
from agent.psl import PublicSuffixList
from agent.state import StateStore
from lab.httpserver import HttpServer

PSL = PublicSuffixList(["fr", "org", "com", "net"])


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_system_servers_from_resolv_conf_resolved_timesyncd_and_chrony(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "etc/resolv.conf": "# by hand\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n"
                           "search example.org\n",
        "run/systemd/resolve/resolv.conf": "nameserver 192.0.2.53\n",
        "etc/systemd/resolved.conf": "[Resolve]\n#DNS=\nFallbackDNS=9.9.9.9\n",
        "etc/systemd/resolved.conf.d/dns.conf":
            "[Resolve]\nDNS=1.1.1.1#cloudflare-dns.com [2606:4700::1111]:853%eth0#one.one "
            "8.8.8.8:53\n",
        "etc/systemd/timesyncd.conf": "[Time]\nNTP=ntp.chu-example.fr 192.0.2.123\n",
        "etc/chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n! server off.example\n"
                                  "sourcedir /run/chrony-dhcp\nsourcedir /etc/chrony/sources.d\n"
                                  "confdir /etc/chrony/conf.d\n",
        "etc/chrony/sources.d/local.sources": "server ntp1.example.net iburst # ours\n",
        "etc/chrony/conf.d/peer.conf": "peer 198.51.100.7\n",
        "run/chrony-dhcp/eth0.sources": "server 203.0.113.9 iburst\n",
    })
    found = system_servers(root)
    assert [s.host for s in found] == [
        "127.0.0.53", "fe80::1", "192.0.2.53", "9.9.9.9", "1.1.1.1", "2606:4700::1111",
        "8.8.8.8", "ntp.chu-example.fr", "192.0.2.123", "2.debian.pool.ntp.org",
        "203.0.113.9", "ntp1.example.net", "198.51.100.7"]
    assert Server("1.1.1.1", "resolver in /etc/systemd/resolved.conf.d/dns.conf") in found
    assert Server("ntp1.example.net", "NTP server in /etc/chrony/sources.d/local.sources") in found


def test_system_servers_of_an_empty_system(tmp_path: Path) -> None:
    assert system_servers(tmp_path) == []


CONFIG = """
feeds:
  - name: cert
    url: https://feeds.cert.example.org/cert/manifest.json
    mirrors: [https://198.51.100.80/cert/manifest.json]
    trusted_keys: [RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3]
guards:
  protected: [chu-example.fr]
  lifeline_except: [pool.ntp.org]
dns:
  backend: dnsupdate
  server: "[2001:db8::53]:5300"
  tsig_key_file: /etc/tsig.key
  resolver: resolver.chu-example.fr
isolation:
  allow: [messagerie.mssante.fr]
"""


class FakeDns:
    """getaddrinfo's stand-in: fixed answers, and what was asked."""

    def __init__(self, answers: Mapping[str, list[str] | None]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    def __call__(self, names: Iterable[str], deadline: float) -> dict[str, list[str] | None]:
        names = list(names)
        self.asked += names
        return {n: self.answers[n] for n in names if n in self.answers}


def test_gather_resolves_keeps_and_forgets(tmp_path: Path) -> None:
    config = loads(CONFIG)
    store = StateStore(tmp_path / "state")
    system = [Server("2.debian.pool.ntp.org", "NTP server in /etc/chrony/chrony.conf"),
              Server("192.0.2.53", "resolver in /etc/resolv.conf")]
    dns = FakeDns({"feeds.cert.example.org": ["203.0.113.10", "2001:db8:f::10"],
                   "2.debian.pool.ntp.org": ["198.51.100.123"],
                   "chu-example.fr": ["192.0.2.80"], "messagerie.mssante.fr": None})
    facts = gather(config, store, now=1000, system=system, resolver=dns)
    assert set(dns.asked) == {"feeds.cert.example.org", "resolver.chu-example.fr",
                              "2.debian.pool.ntp.org", "chu-example.fr", "messagerie.mssante.fr"}
    life = dict(facts.lifelines)
    assert life["203.0.113.10"] == "feed server of cert (feeds.cert.example.org)"
    assert life["feeds.cert.example.org"] == "feed server of cert"
    assert life["198.51.100.80"] == "mirror of cert"
    assert life["2001:db8::53"] == "DNS server of dns.server"
    assert life["192.0.2.53"] == "resolver in /etc/resolv.conf"
    assert "198.51.100.123" not in life  # the NTP pool is in guards.lifeline_except
    assert facts.protected == (("192.0.2.80", "address of protected name chu-example.fr"),)
    assert "messagerie.mssante.fr" in facts.unresolved
    # DNS down at the next sync: the kept addresses stay protected
    later = gather(config, store, now=2000, system=system, resolver=FakeDns({}))
    assert "203.0.113.10" in dict(later.lifelines)
    assert kept(config, store).protected == facts.protected
    # a CDN moves the feed server: both addresses are protected until the old one ages out
    moved = gather(config, store, now=3000, system=system,
                   resolver=FakeDns({"feeds.cert.example.org": ["203.0.113.11"]}))
    assert {"203.0.113.10", "203.0.113.11"} <= set(dict(moved.lifelines))
    aged = gather(config, store, now=3000 + KEEP_FOR, system=system, resolver=FakeDns({}))
    assert "203.0.113.10" not in dict(aged.lifelines)


def test_lifeline_except_removes_what_the_operator_lists() -> None:
    config = loads(CONFIG.replace("[pool.ntp.org]", "[pool.ntp.org, 198.51.100.0/24]"))
    servers = configured(config, [Server("0.pool.ntp.org", "NTP server in /etc/chrony.conf")])
    assert "0.pool.ntp.org" in [s.host for s in servers]
    facts = gather(config, None, now=1, system=servers[-1:], resolver=FakeDns(
        {"0.pool.ntp.org": ["192.0.2.1"]}))
    hosts = dict(facts.lifelines)
    assert "0.pool.ntp.org" not in hosts and "192.0.2.1" not in hosts
    assert "198.51.100.80" not in hosts  # the mirror, inside an excepted network


def test_resolve_all_never_waits_past_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow(name: str, *_: object, **__: object) -> list[tuple[object, ...]]:
        if name == "slow.example":
            release.wait(5)
        return [(None, None, None, None, ("192.0.2.7", 0))]

    monkeypatch.setattr("socket.getaddrinfo", slow)
    started = time.monotonic()
    found = resolve_all(["slow.example", "fast.example"], 0.3)
    release.set()
    assert time.monotonic() - started < 2.5  # the slow name holds for 5 s
    assert found == {"fast.example": ["192.0.2.7"]}


def test_policy_refuses_lifelines_and_protected_addresses_naming_the_guard() -> None:
    policy = Policy.build(
        psl=PSL,
        lifelines=[("185.220.101.10", "feed server of cert (feeds.cert.example.org)"),
                   ("feeds.cert.example.org", "feed server of cert")],
        protected_addresses=[("91.219.236.80", "address of protected name chu-example.fr")],
    )
    checks = {
        "185.220.101.10": (LIFELINE, "185.220.101.10 touches lifeline of this gateway "
                         "185.220.101.10, feed server of cert (feeds.cert.example.org)"),
        "185.220.101.0/24": (LIFELINE, "185.220.101.0/24 touches lifeline of this gateway"),
        "feeds.cert.example.org": (LIFELINE, "feeds.cert.example.org is a lifeline of this "
                                   "gateway: feed server of cert"),
        "91.219.236.80": (PROTECTED, "91.219.236.80 touches protected network 91.219.236.80, "
                          "address of protected name chu-example.fr"),
    }
    for value, (reason, detail) in checks.items():
        kind = "domain" if value[0].isalpha() else "ipv4"
        bad = policy.check_one(Indicator(kind, value))
        assert bad is not None and bad.reason == reason and bad.detail.startswith(detail), value
    wild = policy.check_one(Indicator("domain", "cert.example.org", subdomains=True))
    assert wild is not None and wild.reason == LIFELINE
    assert "*.cert.example.org would cover feeds.cert.example.org" in wild.detail
    assert policy.check_one(Indicator("domain", "evil.cert.example.org")) is None
    assert policy.check_one(Indicator("ipv4", "185.220.101.11")) is None


def test_a_feed_cannot_block_a_lifeline_but_the_operator_can(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Callable[..., Any], enforced: Callable[[], dict[str, list[str]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    facts = Facts(lifelines=(("185.220.101.10", "NTP server in /etc/chrony/chrony.conf"),
                             ("185.220.101.11", "feed server of cert (feeds.example.org)")))
    monkeypatch.setattr("agent.lifelines.gather", lambda *a, **k: facts)
    monkeypatch.setattr("agent.lifelines.kept", lambda *a, **k: facts)
    publish("cert", "185.220.101.10\n185.220.101.11\n185.220.101.12\n", serial=1)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    assert cli("deny", "185.220.101.11", "--reason", "the feed server is compromised").code == 0
    result = cli("sync", "--json")
    assert result.code == 0, result.out
    assert result.json["feeds"][0]["guard_rejects"] == {"lifeline": 2}
    assert enforced()["v4"] == ["185.220.101.11", "185.220.101.12"]
    why = cli("why", "185.220.101.10")
    assert "refused by guard rails (cert): 185.220.101.10 touches lifeline of this gateway " \
        "185.220.101.10, NTP server in /etc/chrony/chrony.conf" in why.out


def test_status_lists_the_lifelines_and_what_did_not_resolve(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    publish("cert", "185.220.101.12\n", serial=1)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json"),
                  "mirrors": ["https://mirror.cert.example.org/cert/manifest.json"]})
    monkeypatch.setattr("agent.lifelines.system_servers", lambda *a: [
        Server("192.0.2.53", "resolver in /etc/resolv.conf")])
    assert cli("sync").code == 0
    doc = cli("status", "--json").json["lifelines"]
    assert {"value": "127.0.0.1", "what": "feed server of cert"} in doc["protected"]
    assert {"value": "192.0.2.53", "what": "resolver in /etc/resolv.conf"} in doc["protected"]
    assert doc["unresolved"] == ["mirror.cert.example.org"]  # no DNS in unit tests
    text = cli("status").out
    assert "lifelines never blocked: 127.0.0.1, mirror.cert.example.org, 192.0.2.53" in text
    assert "not resolved at the last sync" in text
