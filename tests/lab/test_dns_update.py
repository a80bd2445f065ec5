"""The dnsupdate path end to end in the namespace lab: `blocklist-agent sync` in ns gw sends
RFC 2136 updates signed with TSIG to a primary (127.0.0.1:5300 in ns gw: BIND 9, then Knot DNS,
each from its config/resolvers snippet), an Unbound resolver follows the zone by NOTIFY + IXFR,
and a LAN client asks Unbound (docs/design.md §7).

Run in order against one agent state: first load, an incremental update (IXFR, visible within
seconds), an unchanged sync, a zone changed behind the agent's back, a wrong key, a primary
rebuilt empty, an update that breaks off half way.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.name
import dns.rcode
import dns.update
import pytest

from agent import dnsstatus
from agent.backends import dns_update
from agent.backends.base import ApplyContext
from agent.backends.dns_client import DnsClient, load_tsig_key
from agent.backends.dns_common import load_state
from agent.backends.dns_update import DnsUpdateBackend
from agent.config import Config, load
from agent.errors import ApplyError
from agent.plan import make_plan
from agent.publish import minisign, publish
from agent.state import StateStore
from lab import Lab
from lab.resolvers import (
    RPZ_ZONE,
    Server,
    TsigKey,
    addresses,
    example_zone,
    query,
    start_authoritative,
    start_bind_primary,
    start_knot_primary,
    start_unbound,
)

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

NX = dns.rcode.NXDOMAIN
PRIMARY = ("127.0.0.1", 5300)
# enough names that a two-record change is a small IXFR (BIND sends a whole AXFR instead when
# the difference is larger than the zone)
FILLER = [f"filler-{i}.example" for i in range(200)]
FEED = ["evil.example", "*.phish.example", "203.0.113.66", "2001:db8:200::66", *FILLER]


@dataclass
class Setup:
    kind: str  # the primary: "bind" or "knot"
    lab: Lab
    root: Path
    key: minisign.SecretKey
    tsig: TsigKey
    upstream: Server
    primary: Server
    unbound: Server
    serial: int = 0

    @property
    def config_path(self) -> Path:
        return self.root / "agent.yaml"

    @property
    def key_file(self) -> Path:
        return self.root / "tsig.key"

    def config(self) -> Config:
        return load(self.config_path)

    def publish(self, *lines: str) -> None:
        self.serial += 1
        payload = self.root / "src" / "indicators.txt"
        payload.parent.mkdir(exist_ok=True)
        payload.write_text("\n".join(lines) + "\n")
        publish([payload], out_dir=self.root / "feed", key=self.key, publisher="lab CERT",
                serial=self.serial, expires=timedelta(days=1),
                now=datetime.now(UTC) - timedelta(minutes=1))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", sys.executable, "-m", "agent", "-c", str(self.config_path),
                            *args, check=False, timeout=120)

    def sync(self) -> str:
        proc = self.cli("sync", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr + self.primary.log()[-2000:]
        notes = json.loads(proc.stdout)["applied_notes"]
        return " ".join(n for n in notes if n.startswith("dnsupdate"))

    def rcode(self, name: str, rdtype: str = "A") -> int | None:
        msg = query(self.lab, "lan1", self.lab.addr["gw_lan1"], name, rdtype)
        return None if msg is None else msg.rcode()

    def resolves(self, name: str) -> bool:
        msg = query(self.lab, "lan1", self.lab.addr["gw_lan1"], name)
        return self.lab.addr["site"] in addresses(msg)

    def connect(self) -> Callable[[int, int], socket.socket]:
        return lambda family, kind: self.lab.make_socket("gw", family, kind)

    def primary_client(self) -> DnsClient:
        return DnsClient(f"{PRIMARY[0]}:{PRIMARY[1]}", key=load_tsig_key(str(self.key_file)),
                         connect=self.connect())

    def on_primary(self, owner: str) -> bool:
        """Does the primary's zone hold a record for this owner now?"""
        msg = query(self.lab, "gw", PRIMARY[0], f"{owner}.{RPZ_ZONE}", "CNAME", port=PRIMARY[1],
                    rd=False)
        return msg is not None and bool(msg.answer)

    def follower_serial(self) -> int | None:
        return dnsstatus.served_serial(self.config(), connect=self.connect())


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until `check()` held; fails after `timeout` (generous: a loaded CI machine)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def start_primary(kind: str, lab: Lab, tsig: TsigKey) -> Server:
    start = start_bind_primary if kind == "bind" else start_knot_primary
    return start(lab, tsig=tsig, listen=PRIMARY, notify=[("127.0.0.1", 53)])


def last_transfer_was_ixfr(kind: str, log: str) -> bool:
    """Did the primary serve its latest transfer as an incremental one?"""
    if kind == "bind":
        ends = [line for line in log.splitlines() if "transfer of" in line and "ended" in line]
        return bool(ends) and "AXFR-style" not in ends[-1] and "IXFR ended" in ends[-1]
    ends = [line for line in log.splitlines() if ", outgoing, remote" in line
            and "finished" in line]
    return bool(ends) and "] IXFR, outgoing" in ends[-1]


@pytest.fixture(scope="module", params=["bind", "knot"])
def setup(request: pytest.FixtureRequest, lab: Lab,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kind: str = request.param
    root = tmp_path_factory.mktemp(f"dnsupdate-{kind}")
    tsig = TsigKey.generate()
    _, key = minisign.generate_keypair()
    with start_authoritative(lab, {"example.": example_zone(lab)}) as upstream:
        primary = start_primary(kind, lab, tsig)
        unbound = start_unbound(lab, listen=[(lab.addr["gw_lan1"], 53), ("127.0.0.1", 53)],
                                upstream=(upstream.address, 53), rpz_primary=PRIMARY)
        setup = Setup(kind, lab, root, key, tsig, upstream, primary, unbound)
        setup.key_file.write_text(tsig.bind_text())
        setup.config_path.write_text(f"""
state_dir: state
local_dir: local.d
feeds:
  - name: lab-cert
    url: {(root / "feed" / "manifest.json").as_uri()}
    trusted_keys: ["{key.public_key.to_text()}"]
guards:
  max_change: 1.0
  protected: [10.10.0.0/16]
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: none
dns:
  backend: dnsupdate
  server: {PRIMARY[0]}:{PRIMARY[1]}
  tsig_key_file: {setup.key_file}
  resolver: {lab.addr['gw_lan1']}
  ttl: 60
""")
        try:
            yield setup
        finally:
            setup.unbound.stop()
            setup.primary.stop()


def test_first_sync_loads_the_primary_and_the_follower_blocks(setup: Setup) -> None:
    setup.publish(*FEED)
    assert setup.cli("allow", "ok.phish.example", "--reason", "intranet").returncode == 0
    assert setup.resolves("evil.example")
    note = setup.sync()
    assert "full comparison (first sync)" in note, note
    eventually(lambda: setup.rcode("evil.example") == NX)
    assert setup.rcode("login.phish.example") == NX and setup.rcode("phish.example") == NX
    assert setup.rcode("filler-7.example") == NX
    assert setup.rcode("c2.example") == NX and setup.rcode("c2.example", "AAAA") == NX
    assert setup.rcode("to-c2.example") == NX  # rpz-ip rewrites the CNAME chain's answer
    assert setup.resolves("ok.phish.example") and setup.resolves("good.example")
    assert setup.resolves("www.evil.example")


def test_status_compares_the_followers_serial_with_the_primarys(setup: Setup) -> None:
    state = load_state(setup.root / "state")
    with setup.primary_client() as client:
        assert state["serial"] == client.soa_serial(RPZ_ZONE) and state["in_sync"] is True
    eventually(lambda: setup.follower_serial() == state["serial"])
    status = dnsstatus.zone_status(setup.config(), connect=setup.connect())
    assert status["in_sync"] is True and status["rendered_serial"] == state["serial"], status
    why = dnsstatus.resolver_answer(setup.config(), "evil.example", connect=setup.connect())
    assert why["blocked"] is True and why["trigger"]["rdata"] == "CNAME .", why


def test_update_sends_only_the_difference_and_resolvers_follow_by_ixfr(setup: Setup) -> None:
    setup.publish(*[v for v in FEED if v != "evil.example"], "new-evil.example")
    note = setup.sync()
    assert "incremental, 2 owners changed in 1 messages" in note, note
    took = eventually(lambda: setup.rcode("new-evil.example") == NX)
    assert setup.resolves("evil.example")
    assert took < 5.0
    assert last_transfer_was_ixfr(setup.kind, setup.primary.log()), setup.primary.log()[-1500:]


def test_unchanged_sync_sends_nothing(setup: Setup) -> None:
    serial = load_state(setup.root / "state")["serial"]
    note = setup.sync()
    # the primary still serves the serial the agent left: nothing to compute, nothing sent
    assert note == f"dnsupdate: unchanged, primary {PRIMARY[0]}:{PRIMARY[1]} serial {serial}", note
    with setup.primary_client() as client:
        assert client.soa_serial(RPZ_ZONE) == serial


def test_zone_changed_behind_the_agents_back_is_repaired(setup: Setup) -> None:
    with setup.primary_client() as client:  # someone deletes a record by hand
        msg = dns.update.UpdateMessage(RPZ_ZONE)
        msg.delete(dns.name.from_text("new-evil.example", dns.name.from_text(RPZ_ZONE)))
        client.update(msg)
    eventually(lambda: setup.resolves("new-evil.example"))
    note = setup.sync()
    assert "full comparison (the primary's serial is" in note and "1 owners changed" in note
    eventually(lambda: setup.rcode("new-evil.example") == NX)


def test_wrong_tsig_key_fails_and_keeps_the_blocking(setup: Setup) -> None:
    good = setup.key_file.read_text()
    setup.key_file.write_text(TsigKey(setup.tsig.name, TsigKey.generate().secret).bind_text())
    try:
        setup.publish(*FEED)
        proc = setup.cli("sync")
        assert proc.returncode == 1
        assert "TSIG" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert setup.rcode("new-evil.example") == NX and setup.resolves("evil.example")
    finally:
        setup.key_file.write_text(good)
    assert "incremental, 2 owners changed" in setup.sync()
    eventually(lambda: setup.rcode("evil.example") == NX)


def test_primary_rebuilt_empty_is_reloaded_and_followed(setup: Setup) -> None:
    before = load_state(setup.root / "state")["serial"]
    setup.primary.stop()
    setup.primary = start_primary(setup.kind, setup.lab, setup.tsig)  # serial 1, no records
    note = setup.sync()
    assert "full comparison (the primary's serial is 1" in note, note
    after = load_state(setup.root / "state")["serial"]
    assert after > before  # past the followers' copy, or they would ignore the primary
    eventually(lambda: setup.follower_serial() == after)
    assert setup.rcode("evil.example") == NX and setup.rcode("filler-9.example") == NX


def test_update_broken_off_half_way_is_completed_by_the_next_sync(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup.config()
    store = StateStore(config.state_dir)
    applied = store.load_applied()
    assert applied is not None
    blocklist, meta = applied
    target = blocklist._replace(names=blocklist.names | {f"late-{i}.example" for i in range(40)},
                                wild=frozenset())
    plan = make_plan(blocklist, target, max_change=1.0)
    monkeypatch.setattr(dns_update, "WIRE_BUDGET", 1200)  # several small messages

    sent: list[int] = []

    class Breaking(socket.socket):
        def sendall(self, data: Any, flags: int = 0) -> None:
            sent.append(len(data))
            if len(sent) == 4:  # SOA query, two updates, then the line breaks
                raise BrokenPipeError(32, "simulated: the line broke")
            super().sendall(data, flags)

    def connect(family: int, kind: int) -> socket.socket:
        inner = setup.lab.make_socket("gw", family, kind)
        return Breaking(family, kind, fileno=inner.detach())

    backend = DnsUpdateBackend.from_config(config, connect=connect)
    with pytest.raises(ApplyError) as err:
        backend.apply(plan, target, ApplyContext(config, store, int(meta["rpz_serial"]) + 1))
    assert err.value.reason == "dns-unreachable"
    assert load_state(config.state_dir)["in_sync"] is False
    landed = sum(setup.on_primary(f"late-{i}.example") for i in range(40))
    assert 0 < landed < 40  # the first messages went through, the others never did ...
    assert setup.on_primary("*.phish.example")  # ... nor the removals, sent last

    note = setup.sync()  # back to the feed's list: the whole zone is compared and repaired
    assert "full comparison (the previous update did not complete)" in note, note
    assert not any(setup.on_primary(f"late-{i}.example") for i in range(40))
    eventually(lambda: setup.rcode("login.phish.example") == NX)
    assert setup.rcode("evil.example") == NX
