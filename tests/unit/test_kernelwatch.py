"""The kernel watcher's judgement, without a kernel: the monitor's lines, what the agent wants,
what a folded burst of events calls for, and what STATUS= and the metrics say of the kernel.

The watcher against real nft (flush ruleset, deleted elements, floods) is tests/lab/test_repair*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent import metrics
from agent.backends.nft_view import KernelIsolation
from agent.config import Config, loads
from agent.daemon import kernelwant as want
from agent.daemon import nftmonitor, report
from agent.daemon.kernelfacts import KernelFacts, Repair
from agent.daemon.kernelwatch import KernelWatcher
from agent.isolation import IsolationState, Quarantine
from agent.merge import Blocklist
from agent.state import StateStore
from tests.unit.test_metrics import parse

T = "blocklist_agent"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return loads(f"""
state_dir: {tmp_path / "state"}
firewall:
  backend: nftables
  wan_interfaces: [wan0]
  management: [10.10.99.0/24, "fd00:10:99::/64"]
dns: {{backend: none}}
isolation:
  peers:
    ch-voisin: [203.0.113.128/25]
""")


@pytest.fixture
def store(config: Config) -> StateStore:
    s = StateStore(config.state_dir)
    s.ensure()
    s.save_applied(Blocklist(v4=frozenset({"203.0.113.66"}),
                             v6_nets=frozenset({"2001:db8:bad::/48"})), {"generation": 3})
    s.save_nft_record({"table": T, "generation": 3, "skeleton": "x"})
    return s


def ev(op: str, set_name: str, value: str) -> nftmonitor.Event:
    return nftmonitor.Event(op, set_name, value, value)


# --- the monitor's lines -------------------------------------------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    ("add element inet blocklist_agent v4 { 203.0.113.66 }", [("add", "v4", "203.0.113.66")]),
    ('delete element inet blocklist_agent iso_wan { "wan0" timeout 2h expires 1h59m59s972ms }',
     [("delete", "iso_wan", "wan0")]),
    ("add element inet blocklist_agent peer_v4 { 203.0.113.128/25 timeout 1h expires 1h }",
     [("add", "peer_v4", "203.0.113.128/25")]),
    ("add element inet blocklist_agent v4 { 1.2.3.4, 1.2.3.5 }",
     [("add", "v4", "1.2.3.4"), ("add", "v4", "1.2.3.5")]),
    ('add element inet blocklist_agent iso_wan { "a,b", "wan0" }',
     [("add", "iso_wan", "a,b"), ("add", "iso_wan", "wan0")]),
    ("add element inet blocklist_agent v4_nets { 10.0.0.1-10.0.0.5 }",
     [("add", "v4_nets", "10.0.0.1-10.0.0.5")]),
    ("add element inet filter v4 { 1.2.3.4 }", []),  # another table: not ours
    ("add element ip blocklist_agent v4 { 1.2.3.4 }", []),  # another family
    ("add rule inet blocklist_agent forward drop", []),
])
def test_monitor_lines(line: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(e.op, e.set, e.value) for e in nftmonitor.parse(line + "\n", T)] == expected


def test_canonical_spelling() -> None:
    assert nftmonitor.canonical("2001:db8:0:0:1:0:0:1") == "2001:db8::1:0:0:1"
    assert nftmonitor.canonical("192.0.2.0/24") == "192.0.2.0/24"
    assert nftmonitor.canonical("wan0") == "wan0"


def test_rendered_lines_read_by_the_same_parser(config: Config) -> None:
    from agent.render.nft_isolation import iso_elements

    state = IsolationState(active=True, since=100, deadline=200, allow=("203.0.113.20",))
    parsed = nftmonitor.elements(iso_elements(config.firewall, state, 100), T)
    assert parsed["iso_wan"] == {"wan0": '"wan0" timeout 100s'}
    assert parsed["iso_allow_v4"] == {"203.0.113.20": "203.0.113.20"}


# --- what the agent wants, and what a burst calls for ---------------------------------------

def test_folded_events_of_our_own_update_call_for_nothing(config: Config,
                                                          store: StateStore) -> None:
    desired = want.Desired(config, store)
    small = desired.small(IsolationState(), 100)
    events = [ev("delete", "v4", "203.0.113.66"), ev("add", "v4", "203.0.113.66"),  # net: add
              ev("add", "v6_nets", "2001:db8:bad::/48"), ev("add", "offenders_v4", "10.0.0.9")]
    assert want.compare_events(want.fold(events), desired, small, big_known=True) == {}


def test_foreign_deletion_re_added_foreign_addition_deleted(config: Config,
                                                            store: StateStore) -> None:
    desired = want.Desired(config, store)
    small = desired.small(IsolationState(), 100)
    events = [ev("delete", "v4", "203.0.113.66"), ev("add", "v4", "203.0.113.10"),
              ev("delete", "mgmt_v4", "10.10.99.0/24"), ev("add", "iso_allow_v4", "8.8.8.8")]
    fixes = want.compare_events(want.fold(events), desired, small, big_known=True)
    assert fixes["v4"].add == ["203.0.113.66"] and fixes["v4"].delete == ["203.0.113.10"]
    assert fixes["mgmt_v4"].readded == ["10.10.99.0/24"]
    assert fixes["iso_allow_v4"].delete == ["8.8.8.8"]


def test_big_sets_are_not_judged_when_the_kernel_holds_another_list(
        config: Config, store: StateStore) -> None:
    store.save_nft_record({"table": T, "generation": 4, "skeleton": "x"})  # applied.json: 3
    desired = want.Desired(config, store)
    assert not desired.big_known(store.load_nft_record())
    store.save_nft_record({"table": T, "generation": 3, "pending": True})
    assert not desired.big_known(store.load_nft_record())
    fixes = want.compare_events(want.fold([ev("delete", "v4", "203.0.113.66")]), desired,
                                desired.small(IsolationState(), 100), big_known=False)
    assert fixes == {}


def test_a_foreign_cut_is_kept_a_lost_cut_re_imposed(config: Config, store: StateStore) -> None:
    desired = want.Desired(config, store)
    idle = desired.small(IsolationState(), 100)
    fixes = want.compare_small({"iso_wan": ["wan0"]}, idle)  # break-glass.nft
    assert fixes["iso_wan"].kept == ["wan0"] and not fixes["iso_wan"].delete
    isolated = desired.small(IsolationState(active=True, since=1, deadline=1000), 100)
    fixes = want.compare_small({"iso_wan": []}, isolated)
    assert fixes["iso_wan"].readded == ["wan0"]


def test_a_cut_about_to_expire_is_let_go(config: Config, store: StateStore) -> None:
    """The kernel's timeout and the wall clock differ by a second: never re-add at the end."""
    desired = want.Desired(config, store)
    ending = desired.small(IsolationState(active=True, since=1, deadline=101), 100)
    assert want.compare_small({"iso_wan": []}, ending) == {}
    peer = Quarantine("ch-voisin", ("203.0.113.128/25",), 1, "x", "y", deadline=102)
    ending = desired.small(IsolationState(peers=(peer,)), 100)
    assert want.compare_small({"peer_v4": []}, ending) == {}


def test_skeleton_changes_named(config: Config) -> None:
    expected = want.expected_objects(config)
    assert "chain forward" in expected and "set iso_wan" in expected
    objects: list[dict[str, Any]] = [{"chain": {"name": n.split()[1]}} for n in expected
                                     if n.startswith("chain") and n != "chain forward"]
    objects.append({"set": {"name": "extra"}})
    text = want.skeleton_changes(objects, expected)
    assert "missing: chain forward" in text and "added: set extra" in text


# --- the watcher's flow, with a writer that records and a kernel that answers --------------

class Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def desired_isolation(self) -> IsolationState:
        return IsolationState()

    def repair(self, reason: str) -> str:
        self.calls.append(("repair", reason))
        return "full reload"

    def repair_elements(self, set_name: str, add: list[str], delete: list[str],
                        reason: str) -> str:
        self.calls.append(("elements", set_name, add, delete))
        return "elements"

    def repair_isolation(self, reason: str) -> KernelIsolation:
        self.calls.append(("isolation", reason))
        return KernelIsolation(True)


class View:
    def __init__(self, present: bool) -> None:
        self.answer = present

    def present(self, set_name: str, value: str) -> bool:
        return self.answer


def watcher(config: Config, store: StateStore, present: bool = True
            ) -> tuple[KernelWatcher, Writer, list[Repair]]:
    writer, repairs = Writer(), []
    w = KernelWatcher(config, store, nft=None, writer=writer, monitor=False,  # type: ignore
                      on_repair=repairs.append)
    w.view = View(present)  # type: ignore[assignment]
    return w, writer, repairs


def test_a_burst_is_repaired_through_the_writer(config: Config, store: StateStore) -> None:
    w, writer, repairs = watcher(config, store)
    w._on_events([ev("delete", "v4", "203.0.113.66"), ev("delete", "mgmt_v4", "10.10.99.0/24")],
                 False)
    w.check_events()
    assert ("elements", "v4", ["203.0.113.66"], []) in writer.calls
    assert writer.calls[-1][0] == "isolation"  # the small sets, whole, from the intent
    assert {r.kind for r in repairs} == {"element_deleted"} and all(r.ok for r in repairs)
    assert "203.0.113.66" in repairs[0].found


def test_lost_events_probe_then_reload_only_when_something_is_missing(
        config: Config, store: StateStore) -> None:
    w, writer, repairs = watcher(config, store, present=True)
    w._on_events([], True)
    w.check_events()
    assert writer.calls == []  # the probed elements are there: a flood of our own
    w, writer, repairs = watcher(config, store, present=False)
    w._on_events([], True)
    w.check_events()
    assert writer.calls and writer.calls[0][0] == "repair"
    assert repairs[0].kind == "events_lost" and "missing" in repairs[0].found


def test_events_wait_while_the_records_lag_behind(config: Config, store: StateStore) -> None:
    store.save_nft_record({"table": T, "generation": 4, "skeleton": "x"})  # a sync half done
    w, writer, _ = watcher(config, store)
    w._on_events([ev("delete", "v4", "203.0.113.66")], False)
    w.check_events()
    assert writer.calls == [] and w._events  # held, not dropped
    store.save_applied(Blocklist(v4=frozenset({"203.0.113.66"})), {"generation": 4})
    w.check_events()
    assert writer.calls == [("elements", "v4", ["203.0.113.66"], [])]


# --- what is said of the kernel -------------------------------------------------------------

def facts(**kw: Any) -> KernelFacts:
    base: dict[str, Any] = {"readable": True, "table_present": True, "in_sync": True,
                            "isolation": KernelIsolation(True)}
    return KernelFacts(**{**base, **kw})


class Result:
    """The parts of a SyncResult that summary() reads."""

    def __init__(self) -> None:
        self.feeds: list[Any] = []
        self.error = None
        self.blocklist = Blocklist(v4=frozenset({"203.0.113.66"}))

        class Plan:
            held = None
        self.plan = Plan()


def test_status_line_says_what_the_kernel_holds() -> None:
    r: Any = Result()
    assert report.summary(r, 60, facts(), T).startswith("enforcing 1 entries")
    absent = report.summary(r, 60, facts(table_present=False), T)
    assert absent.startswith(f"NOT ENFORCED: table inet {T} is absent from the kernel")
    assert "enforcing" not in absent
    cut = facts(isolation=KernelIsolation(True, wan={"wan0": 7000}), intent_active=True)
    assert report.summary(r, 60, cut, T).startswith(
        "ISOLATED: wan0 cut in the kernel, 116m left; enforcing")
    lost = report.summary(r, 60, facts(intent_active=True), T)
    assert lost.startswith("ISOLATION NOT IN THE KERNEL")


def test_metrics_from_the_kernel(config: Config, store: StateStore, tmp_path: Path) -> None:
    store.save_status({"enforced": {"v4": 1, "v6_nets": 1, "names": 5}})
    path = tmp_path / "m.prom"
    report.write_metrics(path, config, store, [], 1_800_000_000.0,
                         facts(table_present=False), {"table_deleted": 2})
    m = parse(path.read_text())
    assert m['blocklist_agent_enforced_entries{set="v4"}'] == 0  # nothing in the kernel
    assert m['blocklist_agent_enforced_entries{set="names"}'] == 5  # the resolver's, not nft's
    assert m["blocklist_agent_kernel_table_present"] == 0
    assert m['blocklist_agent_repairs_total{kind="table_deleted"}'] == 2
    assert m['blocklist_agent_repairs_total{kind="element_added"}'] == 0  # every kind exists
    store.save_isolation(IsolationState(active=True, since=5).to_json())  # recorded only
    report.write_metrics(path, config, store, [], 1_800_000_000.0, facts(), {})
    m = parse(path.read_text())
    assert m["blocklist_agent_isolation_active"] == 0  # the kernel does not cut: not isolated
    assert m["blocklist_agent_kernel_mismatch"] == 1
    cut = facts(isolation=KernelIsolation(True, wan={"wan0": 600},
                                          peers={"203.0.113.128/25": None}))
    report.write_metrics(path, config, store, [], 1_800_000_000.0, cut, {})
    m = parse(path.read_text())
    assert m["blocklist_agent_isolation_active"] == 1
    assert m["blocklist_agent_isolation_expires_seconds"] == 600
    assert m['blocklist_agent_isolation_peer{peer="203.0.113.128/25"}'] == 1  # no record


def test_metrics_without_the_watcher_are_as_before() -> None:
    m = parse(metrics.render({}, enforced={"v4": 3}, applied_at=None, now=1.0))
    assert "blocklist_agent_kernel_table_present" not in m
    assert not any(k.startswith("blocklist_agent_repairs_total") for k in m)
