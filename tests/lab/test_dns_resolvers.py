"""The zone-file DNS backends against real resolvers in the namespace lab (docs/design.md §7, §9).

For each of Unbound, BIND 9 and Knot Resolver: the resolver runs in ns gw with the RPZ zone
file of the agent, forwarding (or iterating) to an authoritative server for `example.` in ns
wan; `blocklist-agent sync` runs in ns gw like on a gateway; a LAN client in ns lan1 asks.
The tests of a resolver run in order against one agent state, like an operator's day: first
sync, status and why, a feed update, an unchanged sync, a refused feed, a broken zone, a
reload that fails, other actions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from agent import dnsstatus
from agent.backends.base import ApplyContext
from agent.backends.dns_common import Command
from agent.backends.dns_zonefile import ZoneFileBackend
from agent.backends.registry import dns_backend_for
from agent.config import Config, load
from agent.errors import ApplyError
from agent.plan import make_plan
from agent.publish import minisign, publish
from agent.render.rpz import render_zone
from agent.state import StateStore
from lab import Lab
from lab.resolvers import (
    Server,
    addresses,
    example_zone,
    query,
    start_authoritative,
    start_bind_resolver,
    start_kresd,
    start_unbound,
)

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

NX = dns.rcode.NXDOMAIN
LISTEN = {"unbound": "gw_lan1", "bind": "gw_lan2", "knot-resolver": "gw_mgmt"}
FEED = ["evil.example", "*.phish.example", "203.0.113.66", "2001:db8:200::66", "192.0.2.0/24"]


@dataclass
class DnsAgent:
    lab: Lab
    kind: str
    root: Path
    key: minisign.SecretKey
    resolver: Server
    serial: int = 0
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "agent.yaml"

    @property
    def zonefile(self) -> Path:
        return self.root / "zones" / "rpz.zone"

    @property
    def address(self) -> str:
        return self.lab.addr[LISTEN[self.kind]]

    def write_config(self, **dns: str) -> None:
        self.settings.update(dns)
        extra = "".join(f"  {k}: {v}\n" for k, v in self.settings.items())
        self.config_path.write_text(f"""
state_dir: state
local_dir: local.d
feeds:
  - name: lab-cert
    url: {(self.root / "feed" / "manifest.json").as_uri()}
    trusted_keys: ["{self.key.public_key.to_text()}"]
guards:
  max_change: 1.0
  protected: [10.10.0.0/16]
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: none
dns:
  backend: {self.kind}
  zonefile: {self.zonefile}
  resolver: {self.address}
  ttl: 60
{extra}""")

    def config(self) -> Config:
        return load(self.config_path)

    def publish(self, *lines: str, key: minisign.SecretKey | None = None) -> None:
        self.serial += 1
        payload = self.root / "src" / "indicators.txt"
        payload.parent.mkdir(exist_ok=True)
        payload.write_text("\n".join(lines) + "\n")
        publish([payload], out_dir=self.root / "feed", key=key or self.key, publisher="lab CERT",
                serial=self.serial, expires=timedelta(days=1),
                now=datetime.now(UTC) - timedelta(minutes=1))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", sys.executable, "-m", "agent", "-c", str(self.config_path),
                            *args, check=False, timeout=120)

    def sync(self) -> dict[str, Any]:
        proc = self.cli("sync", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr + self.resolver.log()[-2000:]
        return dict(json.loads(proc.stdout))

    def ask(self, name: str, rdtype: str = "A") -> dns.message.Message | None:
        return query(self.lab, "lan1", self.address, name, rdtype)

    def rcode(self, name: str, rdtype: str = "A") -> int | None:
        msg = self.ask(name, rdtype)
        return None if msg is None else msg.rcode()

    def connect(self) -> Callable[[int, int], Any]:
        return lambda family, kind: self.lab.make_socket("gw", family, kind)

    def zone_status(self) -> dict[str, Any]:
        return dnsstatus.zone_status(self.config(), connect=self.connect())

    def served_serial(self) -> int | None:
        return dnsstatus.served_serial(self.config(), connect=self.connect())


def resolves(agent: DnsAgent, name: str) -> bool:
    return agent.lab.addr["site"] in addresses(agent.ask(name))


@pytest.fixture(scope="module")
def upstream(lab: Lab) -> Iterator[Server]:
    with start_authoritative(lab, {"example.": example_zone(lab)}) as server:
        yield server


@pytest.fixture(scope="module", params=list(LISTEN))
def agent(request: pytest.FixtureRequest, lab: Lab, upstream: Server,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsAgent]:
    kind: str = request.param
    root = tmp_path_factory.mktemp(f"dns-{kind}")
    zonefile = root / "zones" / "rpz.zone"
    listen = [(lab.addr[LISTEN[kind]], 53)]
    up = (upstream.address, 53)
    starters = {
        "unbound": lambda: start_unbound(lab, listen=listen, upstream=up, rpz_zonefile=zonefile),
        "bind": lambda: start_bind_resolver(lab, listen=listen, upstream=up,
                                            rpz_zonefile=zonefile),
        "knot-resolver": lambda: start_kresd(lab, listen=listen, upstream=up,
                                             rpz_zonefile=zonefile),
    }
    with starters[kind]() as resolver:
        _, key = minisign.generate_keypair()
        agent = DnsAgent(lab, kind, root, key, resolver)
        control = resolver.control[4:]  # the command as on a gateway (we run inside ns gw)
        agent.write_config(**({"control": " ".join(control)} if control else {}))
        yield agent


def test_before_the_first_sync_every_name_resolves(agent: DnsAgent) -> None:
    for name in ("evil.example", "login.phish.example", "c2.example", "good.example"):
        assert agent.ask(name) is not None and agent.rcode(name) == dns.rcode.NOERROR, name


def test_first_sync_blocks_names_and_covered_subdomains(agent: DnsAgent) -> None:
    agent.publish(*FEED)
    allow = agent.cli("allow", "ok.phish.example", "--reason", "the intranet portal")
    assert allow.returncode == 0, allow.stderr
    result = agent.sync()
    assert any(note.startswith(f"dns {agent.kind}: zone rpz.blocklist-agent. serial")
               for note in result["applied_notes"]), result["applied_notes"]
    assert agent.rcode("evil.example") == NX
    assert agent.rcode("evil.example", "AAAA") == NX
    assert agent.rcode("phish.example") == NX
    assert agent.rcode("login.phish.example") == NX  # *.phish.example covers subdomains
    assert resolves(agent, "www.evil.example")  # a plain name does not cover its subdomains
    assert resolves(agent, "good.example")
    assert resolves(agent, "ok.phish.example")  # the local allow wins over the blocked parent


def test_answers_pointing_at_blocked_addresses_are_rewritten(agent: DnsAgent) -> None:
    names = [("c2.example", "A"), ("c2.example", "AAAA"), ("to-c2.example", "A"),
             ("bad-host.example", "A")]
    if agent.kind == "knot-resolver":  # kresd 5.6 has no rpz-ip: nftables alone blocks these
        assert all(agent.rcode(n, t) == dns.rcode.NOERROR for n, t in names)
        return
    for name, rdtype in names:
        assert agent.rcode(name, rdtype) == NX, (name, rdtype)


def test_status_shows_served_and_rendered_serial(agent: DnsAgent) -> None:
    status = agent.zone_status()
    rendered = status["rendered_serial"]
    assert isinstance(rendered, int) and rendered > 1
    if agent.kind == "knot-resolver":
        assert status["served_serial"] is None and "does not serve" in status["error"]
    else:
        assert status["served_serial"] == rendered and status["in_sync"] is True, status


def test_why_says_whether_the_resolver_blocks_now(agent: DnsAgent) -> None:
    def answer(name: str) -> dict[str, Any]:
        return dnsstatus.resolver_answer(agent.config(), name, connect=agent.connect())

    evil, allowed, good = answer("evil.example"), answer("ok.phish.example"), answer("good.example")
    assert evil["rcode"] == "NXDOMAIN"
    assert good["blocked"] is False and good["rcode"] == "NOERROR"
    if agent.kind == "knot-resolver":  # no zone to ask: the effect alone, which is ambiguous
        assert evil["blocked"] is None and allowed["blocked"] is False
        return
    assert evil["blocked"] is True and evil["trigger"]["rdata"] == "CNAME .", evil
    sub = answer("a.login.phish.example")
    assert sub["blocked"] is True and sub["trigger"]["action"] == "nxdomain", sub
    assert allowed["blocked"] is False and allowed["trigger"]["action"] == "passthru", allowed


def test_feed_update_is_visible_after_the_next_sync(agent: DnsAgent) -> None:
    before = agent.zone_status()["rendered_serial"]
    agent.publish(*[v for v in FEED if v != "evil.example"], "new-evil.example")
    agent.sync()
    assert agent.rcode("new-evil.example") == NX
    assert resolves(agent, "evil.example")
    after = agent.zone_status()
    assert after["rendered_serial"] > before
    if agent.kind != "knot-resolver":
        assert after["served_serial"] == after["rendered_serial"]


def test_unchanged_sync_leaves_the_zone_alone(agent: DnsAgent) -> None:
    stamp = agent.zonefile.stat().st_mtime_ns
    serial = agent.zone_status()["rendered_serial"]
    result = agent.sync()
    assert f"dns {agent.kind}: unchanged" in " ".join(result["applied_notes"])
    assert agent.zonefile.stat().st_mtime_ns == stamp
    assert agent.zone_status()["rendered_serial"] == serial


def test_refused_feed_keeps_the_blocking(agent: DnsAgent) -> None:
    serial = agent.zone_status()["rendered_serial"]
    _, stranger = minisign.generate_keypair()
    agent.publish("good.example", key=stranger)
    proc = agent.cli("sync")
    assert proc.returncode == 1 and "key" in (proc.stdout + proc.stderr).lower()
    assert agent.rcode("new-evil.example") == NX and resolves(agent, "good.example")
    assert agent.zone_status()["rendered_serial"] == serial
    agent.publish(*[v for v in FEED if v != "evil.example"], "new-evil.example")  # trusted again


def _apply_directly(agent: DnsAgent, backend: ZoneFileBackend, extra: str) -> None:
    """Apply the current blocklist plus one name, in-process, as the sync would."""
    config = agent.config()
    store = StateStore(config.state_dir)
    applied = store.load_applied()
    assert applied is not None
    blocklist, meta = applied
    target = blocklist._replace(names=blocklist.names | {extra})
    plan = make_plan(blocklist, target, max_change=1.0)
    backend.apply(plan, target, ApplyContext(config, store, int(meta["rpz_serial"]) + 1))


def _backend(agent: DnsAgent) -> ZoneFileBackend:
    backend = dns_backend_for(agent.config())
    assert isinstance(backend, ZoneFileBackend)
    # drive the resolver from this (host) process: the same command behind `ip netns exec`
    if backend.control is not None:
        backend.control = Command(agent.resolver.control, package="test")
    backend.connect = agent.connect()
    return backend


def test_broken_zone_never_replaces_the_last_good_one(agent: DnsAgent) -> None:
    before = agent.zonefile.read_text()
    serial = agent.served_serial()
    backend = _backend(agent)

    def broken(dns_cfg: Any, blocklist: Any, serial: int) -> str:  # a renderer bug
        return render_zone(dns_cfg, blocklist, serial) + "good.example CNAME . ; ) $INCLUDE x\n"

    backend.render = broken  # type: ignore[method-assign]
    with pytest.raises(ApplyError) as err:
        _apply_directly(agent, backend, "good.example")
    assert err.value.reason == "dns-zone-check" and "line" in err.value.what
    assert agent.zonefile.read_text() == before
    assert agent.zonefile.with_name("rpz.zone.rejected").exists()
    assert resolves(agent, "good.example") and agent.rcode("new-evil.example") == NX
    assert agent.served_serial() == serial


def test_zone_the_checker_refuses_is_never_loaded(agent: DnsAgent) -> None:
    """A CNAME beside other data passes the agent's line check; named-checkzone refuses it
    (the default check of the bind backend, `dns.check` for the others)."""
    before = agent.zonefile.read_text()
    backend = _backend(agent)
    if agent.kind != "bind":
        assert backend.check is None
        backend.check = Command(["named-checkzone"], package="bind9-utils")

    def clash(dns_cfg: Any, blocklist: Any, serial: int) -> str:
        return render_zone(dns_cfg, blocklist, serial) + "good.example A 192.0.2.80\n"

    backend.render = clash  # type: ignore[method-assign]
    with pytest.raises(ApplyError) as err:
        _apply_directly(agent, backend, "good.example")
    assert "named-checkzone" in err.value.what and "CNAME" in err.value.what, err.value.what
    assert agent.zonefile.read_text() == before
    assert resolves(agent, "good.example")


def test_failed_reload_puts_the_last_good_zone_back(agent: DnsAgent, tmp_path: Path) -> None:
    if agent.kind == "knot-resolver":
        pytest.skip("kresd watches the file: there is no reload command to fail")
    before = agent.zonefile.read_text()
    serial = agent.served_serial()
    backend = _backend(agent)
    flag = tmp_path / "failed-once"
    flaky = tmp_path / "flaky-control"
    # the resolver loads the new zone, then the command reports a failure, once
    flaky.write_text(f"#!/bin/sh\n{' '.join(agent.resolver.control)} \"$@\" || exit 1\n"
                     f"[ -e {flag} ] && exit 0\ntouch {flag}\necho 'error: simulated'\nexit 1\n")
    flaky.chmod(0o755)
    backend.control = Command([str(flaky)], package="test")
    with pytest.raises(ApplyError) as err:
        _apply_directly(agent, backend, "good.example")
    assert "simulated" in err.value.what and "put back and reloaded" in err.value.hint
    assert agent.zonefile.read_text() == before
    assert agent.served_serial() == serial
    assert resolves(agent, "good.example") and agent.rcode("new-evil.example") == NX


@pytest.mark.parametrize("action", ["nodata", "redirect:203.0.113.20", "nxdomain"])
def test_configured_action(agent: DnsAgent, action: str) -> None:
    agent.write_config(action=action)
    result = agent.sync()  # no list change: the new action alone rewrites the zone
    assert "unchanged" not in " ".join(result["applied_notes"])
    msg = agent.ask("new-evil.example")
    assert msg is not None
    if action == "nodata":
        assert msg.rcode() == dns.rcode.NOERROR and addresses(msg) == set()
    elif action == "nxdomain":
        assert msg.rcode() == NX
    else:
        assert addresses(msg) == {"203.0.113.20"}
        why = dnsstatus.resolver_answer(agent.config(), "new-evil.example",
                                        connect=agent.connect())
        assert why["blocked"] is True, why
    assert resolves(agent, "good.example")
