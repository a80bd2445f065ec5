"""An RPZ feed read and re-rendered with its meaning kept, against real resolvers (issue 13).

A signed feed whose payload is an RPZ zone: a wildcard-only trigger, an exception under it (the
shape of Google's restricted.googleapis.com zone), `rpz-drop.` and NODATA actions, and a name
too long for the agent's zone. Unbound, BIND 9 and Knot Resolver in ns gw load the agent's zone;
a LAN client in ns lan1 asks. Then a second feed blocks the excepted name: the exception was
that feed's own and must not unblock it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from agent.publish import minisign, publish
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

LISTEN = {"unbound": "gw_lan1", "bind": "gw_lan2", "knot-resolver": "gw_mgmt"}
TOO_LONG = ".".join(["a" * 63] * 3) + "." + "b" * 48 + ".example"  # 240 characters
ZONE = f"""$TTL 60
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
*.phish.example CNAME .
ok.phish.example CNAME rpz-passthru.
evil.example CNAME rpz-drop.
new-evil.example CNAME *.
{TOO_LONG} CNAME .
"""


class Agent:
    def __init__(self, lab: Lab, kind: str, root: Path, resolver: Server) -> None:
        self.lab, self.kind, self.root, self.resolver = lab, kind, root, resolver
        self.key = minisign.generate_keypair()[1]
        self.serial = {"rpz-cert": 0, "plain-cert": 0}

    @property
    def address(self) -> str:
        return self.lab.addr[LISTEN[self.kind]]

    def publish(self, feed: str, name: str, text: str, fmt: str) -> None:
        self.serial[feed] += 1
        payload = self.root / "src" / feed / name
        payload.parent.mkdir(parents=True, exist_ok=True)
        payload.write_text(text)
        publish([payload], out_dir=self.root / feed, key=self.key, publisher="lab CERT",
                serial=self.serial[feed], expires=timedelta(days=1), formats={name: fmt},
                now=datetime.now(UTC) - timedelta(minutes=1))

    def configure(self, *feeds: str) -> None:
        control = " ".join(self.resolver.control[4:])
        entries = "".join(f"""  - name: {feed}
    url: {(self.root / feed / "manifest.json").as_uri()}
    trusted_keys: ["{self.key.public_key.to_text()}"]
""" for feed in feeds)
        (self.root / "agent.yaml").write_text(f"""state_dir: state
local_dir: local.d
feeds:
{entries}guards:
  max_change: 1.0
firewall:
  backend: none
dns:
  backend: {self.kind}
  zonefile: {self.root / "zones" / "rpz.zone"}
  resolver: {self.address}
  ttl: 60
{f"  control: {control}" if control else ""}
""")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", sys.executable, "-m", "agent", "-c",
                            str(self.root / "agent.yaml"), *args, check=False, timeout=120)

    def sync(self) -> dict[str, Any]:
        proc = self.cli("sync", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr + self.resolver.log()[-2000:]
        return dict(json.loads(proc.stdout))

    def ask(self, name: str) -> dns.message.Message | None:
        return query(self.lab, "lan1", self.address, name, "A")

    def resolves(self, name: str) -> bool:
        return self.lab.addr["site"] in addresses(self.ask(name))

    def nxdomain(self, name: str) -> bool:
        msg = self.ask(name)
        return msg is not None and msg.rcode() == dns.rcode.NXDOMAIN


@pytest.fixture(scope="module")
def upstream(lab: Lab) -> Iterator[Server]:
    with start_authoritative(lab, {"example.": example_zone(lab)}) as server:
        yield server


@pytest.fixture(scope="module", params=list(LISTEN))
def agent(request: pytest.FixtureRequest, lab: Lab, upstream: Server,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    kind: str = request.param
    root = tmp_path_factory.mktemp(f"rpz-{kind}")
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
        yield Agent(lab, kind, root, resolver)


def test_rpz_feed_meaning_is_kept(agent: Agent) -> None:
    agent.publish("rpz-cert", "policy.rpz", ZONE, "rpz")
    agent.configure("rpz-cert")
    result = agent.sync()
    [feed] = result["feeds"]
    assert feed["guard_rejects"] == {"name-too-long": 1}, feed  # refused before the zone
    assert agent.resolves("phish.example")  # `*.phish.example` alone: names below only
    assert agent.nxdomain("login.phish.example")
    assert agent.resolves("ok.phish.example")  # the feed's exception, rendered passthru
    dropped = agent.ask("evil.example")  # rpz-drop: no answer (kresd: SERVFAIL, its DROP)
    assert dropped is None or (agent.kind == "knot-resolver"
                               and dropped.rcode() == dns.rcode.SERVFAIL), dropped
    nodata = agent.ask("new-evil.example")
    assert nodata is not None and nodata.rcode() == dns.rcode.NOERROR
    assert addresses(nodata) == set()
    assert agent.resolves("www.evil.example") and agent.resolves("good.example")


def test_why_names_the_feeds_exception(agent: Agent) -> None:
    proc = agent.cli("why", "ok.phish.example", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["blocked"] is False
    assert [a.get("exception") for a in doc["allowed_by"]] == ["rpz-cert"], doc
    below = json.loads(agent.cli("why", "login.phish.example", "--json").stdout)
    assert below["blocked"] is True and below["enforced"] == [
        {"set": "below", "entry": "*.phish.example"}], below
    if agent.kind != "knot-resolver":  # kresd serves no zone to ask for the trigger
        for name, rdata in (("evil.example", "CNAME rpz-drop."), ("new-evil.example", "CNAME *.")):
            doc = json.loads(agent.cli("why", name, "--json").stdout)
            assert doc["enforced_now"] is True, doc["resolver"]
            assert doc["resolver"]["trigger"]["rdata"] == rdata, doc["resolver"]


def test_another_feed_keeps_the_excepted_name_blocked(agent: Agent) -> None:
    agent.publish("plain-cert", "list.txt", "ok.phish.example\n", "plain")
    agent.configure("rpz-cert", "plain-cert")
    agent.sync()
    assert agent.nxdomain("ok.phish.example")  # the exception was rpz-cert's alone
    assert agent.resolves("phish.example") and agent.nxdomain("login.phish.example")
