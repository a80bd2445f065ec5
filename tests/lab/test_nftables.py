"""The nftables backend in the namespace lab: real `blocklist-agent sync` in the gateway
namespace, real TCP probes from the LAN, the WAN and the gateway itself (docs/design.md §9).

The tests of this module run in order against one lab and one agent state, like an operator's
day: first sync, updates, drift, a failing transaction, the boot path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.backends import nft_writer
from agent.backends.base import ApplyContext
from agent.backends.nft_exec import Nft
from agent.backends.nftables import NftablesBackend
from agent.config import load
from agent.errors import ApplyError, StateError
from agent.merge import Blocklist
from agent.plan import make_plan
from agent.publish import minisign, publish
from agent.state import StateStore
from lab import HTTP_PORT, Lab

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

TABLE = "blocklist_agent"


@dataclass
class Agent:
    lab: Lab
    root: Path
    key: minisign.SecretKey
    serial: int = 0

    @property
    def config(self) -> Path:
        return self.root / "agent.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def publish(self, *lines: str) -> None:
        self.serial += 1
        payload = self.root / "src" / "indicators.txt"
        payload.parent.mkdir(exist_ok=True)
        payload.write_text("\n".join(lines) + "\n")
        publish([payload], out_dir=self.root / "feed", key=self.key, publisher="lab CERT",
                serial=self.serial, expires=timedelta(days=1),
                now=datetime.now(UTC) - timedelta(minutes=1))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", sys.executable, "-m", "agent", "-c", str(self.config), *args,
                            check=False, timeout=120)

    def sync(self, *args: str) -> dict[str, Any]:
        proc = self.cli("sync", "--json", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return dict(json.loads(proc.stdout))

    def nft(self, *args: str) -> str:
        return self.lab.run("gw", "nft", *args).stdout


@pytest.fixture(scope="module")
def agent(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    root = tmp_path_factory.mktemp("nft-agent")
    pub, key = minisign.generate_keypair()
    (root / "agent.yaml").write_text(f"""
state_dir: state
local_dir: local.d
feeds:
  - name: lab-cert
    url: {(root / "feed" / "manifest.json").as_uri()}
    trusted_keys: ["{pub.to_text()}"]
guards:
  max_change: 0.9
  protected: [10.10.0.0/16]
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [wan0]
  management: [10.10.99.0/24, fd00:10:99::/64]
dns:
  backend: none
""")
    # someone else's firewall is already on the gateway: it must survive every sync
    lab.nft("gw", "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;"
                  "\n\t\tip saddr 10.10.2.2 tcp dport 9 counter\n\t}\n}\n")
    yield Agent(lab, root, key)


def reach(lab: Lab, src: str, dst_key: str) -> bool:
    return lab.tcp_probe(src, lab.addr[dst_key], HTTP_PORT, timeout=0.7)


BLOCKED = ["c2", "c26", "bad_prefix_host", "bad_prefix_host6"]
OPEN = ["site", "site6", "essential", "essential6"]


def test_before_the_first_sync_everything_is_reachable(agent: Agent) -> None:
    for name in BLOCKED + OPEN:
        assert reach(agent.lab, "lan1", name), name


def test_first_sync_blocks_addresses_and_prefixes_v4_and_v6(agent: Agent) -> None:
    lab = agent.lab
    agent.publish(lab.addr["c2"], lab.addr["c26"], "192.0.2.0/24", "2001:db8:bad::/48",
                  "10.10.2.2")  # an internal host: refused by the guard rails
    report = agent.sync()
    assert any("full reload" in n for n in report["applied_notes"])
    assert report["feeds"][0]["guard_rejects"] == {"protected": 1}
    for name in BLOCKED:
        assert not reach(lab, "lan1", name), f"{name} should be blocked from lan1"
        assert not reach(lab, "gw", name), f"{name} should be blocked from the gateway itself"
    for name in OPEN:
        assert reach(lab, "lan1", name), name
    assert reach(lab, "lan1", "lan2")  # LAN to LAN is not the blocklist's business


def test_management_hosts_are_blocked_like_any_host(agent: Agent) -> None:
    """Admin workstations are what ransomware operators go for (issue 11): the blocklist has no
    exemption for them (the guards still refuse to block the management networks themselves)."""
    assert not reach(agent.lab, "mgmt", "c2")
    assert not reach(agent.lab, "mgmt", "c26")
    assert not reach(agent.lab, "mgmt", "bad_prefix_host")
    assert reach(agent.lab, "mgmt", "site") and reach(agent.lab, "mgmt", "site6")


def test_inbound_from_a_blocked_address_is_dropped(agent: Agent) -> None:
    lab = agent.lab
    assert not lab.tcp_probe("wan", lab.addr["lan1"], HTTP_PORT, timeout=0.7,
                             src_addr=lab.addr["c2"])
    assert lab.tcp_probe("wan", lab.addr["lan1"], HTTP_PORT, timeout=0.7,
                         src_addr=lab.addr["site"])
    assert not lab.tcp_probe("wan", lab.addr["lan16"], HTTP_PORT, timeout=0.7,
                             src_addr=lab.addr["c26"])


def test_offender_and_counters_in_status(agent: Agent) -> None:
    reach(agent.lab, "lan2", "c2")
    proc = agent.cli("status", "--json")
    status = json.loads(proc.stdout)
    fw = status["firewall"]
    offenders = {o["address"] for o in fw["offenders"]}
    assert {agent.lab.addr["lan1"], agent.lab.addr["lan2"]} <= offenders
    assert fw["counters"]["v4"] > 0 and fw["counters"]["v4_nets"] > 0
    assert fw["table_present"] and fw["in_sync"]
    assert status["enforced"]["v4"] == 1 and status["enforced"]["v6_nets"] == 1
    text = agent.cli("status").stdout
    assert agent.lab.addr["lan1"] in text and "offender" in text


def test_why_says_enforced_now(agent: Agent) -> None:
    answer = json.loads(agent.cli("why", "--json", agent.lab.addr["bad_prefix_host"]).stdout)
    assert answer["blocked"] and answer["enforced_now"] is True
    assert answer["enforced"] == [{"set": "v4_nets", "entry": "192.0.2.0/24"}]


def test_update_is_incremental_and_unblocks_removed_address(agent: Agent) -> None:
    lab = agent.lab
    agent.publish(lab.addr["c26"], "192.0.2.0/24", "2001:db8:bad::/48", "203.0.113.99")
    report = agent.sync()
    assert report["applied_notes"] == ["nftables: incremental update, +1 -1 entries"]
    assert reach(lab, "lan1", "c2")
    assert not reach(lab, "lan1", "c26")
    assert not lab.tcp_probe("lan1", "203.0.113.99", HTTP_PORT, timeout=0.7)
    # the offenders survive an incremental update (the table was not replaced)
    status = json.loads(agent.cli("status", "--json").stdout)
    assert status["firewall"]["offenders"]


def test_other_tables_are_left_alone(agent: Agent) -> None:
    tables = agent.nft("list", "tables")
    assert "table inet filter" in tables
    assert "saddr 10.10.2.2 tcp dport 9" in agent.nft("list", "table", "inet", "filter")


def test_deleted_table_is_repaired_by_the_next_sync(agent: Agent) -> None:
    agent.nft("delete", "table", "inet", TABLE)
    assert reach(agent.lab, "lan1", "c26")
    report = agent.sync()
    assert report["applied_notes"] == ["nftables: full reload (the table is absent)"]
    assert not reach(agent.lab, "lan1", "c26")


def test_altered_table_is_repaired(agent: Agent) -> None:
    agent.nft("flush", "chain", "inet", TABLE, "forward")
    status = json.loads(agent.cli("status", "--json").stdout)
    assert status["firewall"]["in_sync"] is False
    report = agent.sync()
    assert report["applied_notes"] == [
        "nftables: full reload (the table was altered outside the agent (drift))"]
    assert not reach(agent.lab, "lan1", "c26")


def test_failed_transaction_keeps_the_previous_sets(agent: Agent) -> None:
    lab = agent.lab
    config = load(agent.config)
    store = StateStore(config.state_dir)
    applied = store.load_applied()
    assert applied is not None
    # overlapping prefixes: the kernel refuses the whole transaction (nothing aggregates here)
    bad = applied[0]._replace(v4_nets=frozenset({"5.0.0.0/8", "5.1.0.0/16"}))
    backend = NftablesBackend(Nft(["ip", "netns", "exec", lab.ns["gw"], "nft"]))
    enforced = (agent.state / "enforced.nft").read_text()
    with pytest.raises(ApplyError):
        backend.apply(make_plan(applied[0], bad, max_change=1.0), bad,
                      ApplyContext(config=config, store=store, rpz_serial=1))
    assert not reach(lab, "lan1", "c26")
    assert not reach(lab, "lan1", "bad_prefix_host")
    assert "5.0.0.0/8" not in agent.nft("list", "set", "inet", TABLE, "v4_nets")
    # the boot file is the one of the last commit (its parts are written during a commit,
    # enforced.nft replaced only after it), and every part it names is still there
    assert (agent.state / "enforced.nft").read_text() == enforced
    for line in enforced.splitlines():
        if line.startswith("include "):
            assert Path(line.split('"')[1]).is_file(), line


def test_a_boot_file_nft_refuses_is_never_installed(agent: Agent,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """enforced.nft is checked with `nft -c` before it replaces the old one (during the
    commit, since its text replaces our table whole): a text nft refuses is not installed,
    the kernel keeps the commit, and the sync says which file was not written."""
    lab = agent.lab
    config = load(agent.config)
    store = StateStore(config.state_dir)
    applied = store.load_applied()
    assert applied is not None
    real = nft_writer.boot_table

    def broken(*args: Any, **kwargs: Any) -> tuple[str, list[str], str | None]:
        table, parts, check = real(*args, **kwargs)
        return table + "this is not nft\n", parts, None if check is None else check + (
            "this is not nft\n")

    monkeypatch.setattr(nft_writer, "boot_table", broken)
    enforced = (agent.state / "enforced.nft").read_text()
    more = applied[0]._replace(v4=applied[0].v4 | {"198.51.100.66"})
    backend = NftablesBackend(Nft(["ip", "netns", "exec", lab.ns["gw"], "nft"]))
    with pytest.raises(StateError) as err:
        backend.apply(make_plan(applied[0], more, max_change=1.0), more,
                      ApplyContext(config=config, store=store, rpz_serial=1))
    assert "enforced.nft" in err.value.what and "syntax error" in err.value.what
    assert (agent.state / "enforced.nft").read_text() == enforced
    assert "198.51.100.66" in agent.nft("list", "set", "inet", TABLE, "v4")  # committed
    monkeypatch.undo()
    report = agent.sync()  # the kernel holds no recorded list: reloaded, the boot file written
    assert report["applied_notes"][0].startswith("nftables: full reload"), report
    assert "198.51.100.66" not in agent.nft("list", "set", "inet", TABLE, "v4")
    status = json.loads(agent.cli("status", "--json").stdout)
    assert status["firewall"]["in_sync"] is True, status["firewall"]


def test_enforced_nft_restores_everything_with_plain_nft(agent: Agent) -> None:
    enforced = agent.state / "enforced.nft"
    agent.nft("flush", "ruleset")
    assert reach(agent.lab, "lan1", "c26")
    agent.nft("-f", str(enforced))
    assert not reach(agent.lab, "lan1", "c26")
    assert not reach(agent.lab, "lan1", "bad_prefix_host6")
    assert reach(agent.lab, "lan1", "site")


def test_a_damaged_part_of_enforced_nft_is_written_again(agent: Agent) -> None:
    """enforced.nft includes parts (docs/design.md §15): after an update the boot file is the
    table, the base and the difference; a part damaged on disk is seen by the next sync, even
    one that changes nothing, and written again, so that the boot path loads the list."""
    lab = agent.lab
    agent.publish(lab.addr["c2"], lab.addr["c26"], "192.0.2.0/24", "2001:db8:bad::/48",
                  "198.51.100.77")
    agent.sync()
    parts = sorted((agent.state / "boot").glob("*.nft"))
    assert {p.name.split("-")[0] for p in parts} == {"base", "nets", "delta"}, parts
    assert all(f'include "{p}"' in (agent.state / "enforced.nft").read_text() for p in parts)
    base = next(p for p in parts if p.name.startswith("base-"))
    base.write_text(base.read_text()[: len(base.read_text()) // 2])  # torn by a full disk
    report = agent.sync()
    assert any("boot files rewritten" in n and base.name in n
               for n in report["applied_notes"]), report["applied_notes"]
    agent.nft("flush", "ruleset")
    assert reach(lab, "lan1", "c26")
    agent.nft("-f", str(agent.state / "enforced.nft"))  # what the boot unit runs
    for name in ("c2", "c26", "bad_prefix_host6"):
        assert not reach(lab, "lan1", name), name
    assert reach(lab, "lan1", "site")


def test_empty_blocklist_leaves_no_set_empty_by_accident(agent: Agent) -> None:
    """A feed emptied by mistake is held (max_change), the sets stay filled."""
    agent.publish("# nothing today")
    proc = agent.cli("sync")
    assert proc.returncode == 1 and "HELD" in proc.stdout
    assert not reach(agent.lab, "lan1", "c26")
    applied = StateStore(agent.state).load_applied()
    assert applied is not None and applied[0] != Blocklist()


SMALL_ROOMS = ("import sys\nimport agent.render.common as c\nc.HASH_ROOM_MIN = 4\n"
               "from agent.cli.main import main\nsys.exit(main(sys.argv[1:]))")


def test_a_hash_set_that_outgrows_its_room_is_reloaded_with_more(agent: Agent) -> None:
    """The hash sets are declared with a size (the kernel builds the hash at once, see
    render.common.hash_room), which the kernel enforces as a limit. Here the least room is
    4 elements instead of 65536, so that a handful of addresses fills it."""
    lab = agent.lab

    def small(*args: str) -> subprocess.CompletedProcess[str]:
        return lab.run("gw", sys.executable, "-c", SMALL_ROOMS, "-c", str(agent.config), *args,
                       check=False, timeout=120)

    def sync(*addresses: str) -> list[str]:
        agent.publish(*addresses, "192.0.2.0/24", "2001:db8:bad::/48")
        proc = small("sync", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return list(json.loads(proc.stdout)["applied_notes"])

    def room() -> int:
        listing = json.loads(agent.nft("-j", "list", "sets", "inet"))["nftables"]
        return next(int(s["set"]["size"]) for s in listing
                    if "set" in s and s["set"]["name"] == "v4" and s["set"]["table"] == TABLE)

    three = [lab.addr["c2"], "198.51.100.12", "198.51.100.13"]  # IPv4 (c26 is IPv6)
    assert sync(*three)[0].startswith("nftables: full reload")  # other settings: reloaded
    assert room() == 4
    assert sync(*three, "198.51.100.14") == ["nftables: incremental update, +1 -0 entries"]
    assert room() == 4  # 4 fit: the set keeps its room, and the boot file declares it
    enforced = (agent.state / "enforced.nft").read_text()
    assert "set v4 { type ipv4_addr; size 4; }" in enforced
    agent.nft("flush", "ruleset")
    agent.nft("-f", str(agent.state / "enforced.nft"))
    status = json.loads(small("status", "--json").stdout)
    assert status["firewall"]["in_sync"] is True, status["firewall"]  # the table recorded
    assert not reach(lab, "lan1", "c2")
    notes = sync(*three, "198.51.100.14", "198.51.100.15")
    assert notes == ["nftables: full reload (set v4 outgrows its room: 5 elements, declared "
                     "for 4)"], notes
    assert room() == 8
    assert not reach(lab, "lan1", "c2")
    assert agent.sync()["applied_notes"][0].startswith("nftables: full reload")
    assert room() == 65536
