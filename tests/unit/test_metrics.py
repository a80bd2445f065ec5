"""The node_exporter textfile: every line checked against what status.json says."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from agent import metrics

NOW = 1_800_000_000.0
SAMPLE = re.compile(r'^(blocklist_agent_[a-z_]+)(\{.*\})? (\S+)$')


def parse(text: str) -> dict[str, float]:
    """'name{labels}' -> value; also checks the exposition format line by line."""
    assert text.endswith("\n")
    out: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("gauge", "counter")
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        assert match.group(1) in typed, f"sample before its TYPE: {line!r}"
        key = match.group(1) + (match.group(2) or "")
        assert key not in out, f"duplicate series {key}"
        out[key] = float(match.group(3))
    return out


def status() -> dict[str, Any]:
    return {
        "last_sync": {"time": "2027-01-15T08:00:00Z", "result": "partial", "applied": True,
                      "duration": 1.25, "error": None},
        "feeds": {
            "cert-sante": {
                "serial": 42, "issued": "2027-01-15T07:00:00Z", "expires": "2027-01-22T07:00:00Z",
                "stale": False, "last_success": "2027-01-15T08:00:00Z", "error": None,
                "failures": 0, "parsed": 1000, "accepted": 990, "parse_rejects": 4,
                "guard_rejects": {"protected": 5, "prefix-too-short": 1},
            },
            "feodo": {
                "serial": None, "issued": None, "expires": None, "stale": False,
                "last_success": None, "failures": 3, "parsed": 0, "accepted": 0,
                "parse_rejects": 0, "guard_rejects": {},
                "error": {"reason": "bad-signature", "message": "…", "where": "", "hint": ""},
            },
        },
        "enforced": {"v4": 700, "v4_nets": 10, "names": 280, "allow_names": 3},
    }


def render(**kwargs: Any) -> dict[str, float]:
    doc = kwargs.pop("status", status())
    args: dict[str, Any] = {"enforced": status()["enforced"], "applied_at": NOW - 60,
                            "now": NOW, **kwargs}
    return parse(metrics.render(doc, **args))


def test_feed_metrics() -> None:
    m = render()
    issued = NOW - 3600  # 2027-01-15T07:00:00Z; NOW is 08:00
    assert m['blocklist_agent_feed_serial{feed="cert-sante"}'] == 42
    assert m['blocklist_agent_feed_issued_timestamp_seconds{feed="cert-sante"}'] == issued
    assert m['blocklist_agent_feed_age_seconds{feed="cert-sante"}'] == NOW - issued
    assert m['blocklist_agent_feed_expiry_timestamp_seconds{feed="cert-sante"}'] == \
        issued + 7 * 86400
    assert m['blocklist_agent_feed_up{feed="cert-sante"}'] == 1
    assert m['blocklist_agent_feed_up{feed="feodo"}'] == 0
    assert m['blocklist_agent_feed_error{feed="feodo",reason="bad-signature"}'] == 1
    assert m['blocklist_agent_feed_consecutive_failures{feed="feodo"}'] == 3
    assert m['blocklist_agent_feed_accepted{feed="cert-sante"}'] == 990
    assert m['blocklist_agent_feed_rejected{feed="cert-sante",reason="malformed"}'] == 4
    assert m['blocklist_agent_feed_rejected{feed="cert-sante",reason="protected"}'] == 5
    assert m['blocklist_agent_feed_rejected{feed="cert-sante",reason="prefix-too-short"}'] == 1
    # a feed never accepted has no serial, age or expiry: absent, not zero (no false "fresh")
    for name in ("serial", "age_seconds", "expiry_timestamp_seconds"):
        assert f'blocklist_agent_feed_{name}{{feed="feodo"}}' not in m
    assert 'blocklist_agent_feed_last_success_timestamp_seconds{feed="feodo"}' not in m
    assert not any("feed_error" in k and "cert-sante" in k for k in m)


def test_sync_enforced_and_time_metrics() -> None:
    m = render()
    assert m["blocklist_agent_last_sync_duration_seconds"] == 1.25
    assert m['blocklist_agent_last_sync_result{result="partial"}'] == 1
    assert m['blocklist_agent_last_sync_result{result="ok"}'] == 0
    assert m["blocklist_agent_last_sync_applied"] == 1
    assert m['blocklist_agent_enforced_entries{set="v4"}'] == 700
    assert m["blocklist_agent_enforced_total"] == 990  # allow entries block nothing
    assert m["blocklist_agent_applied_timestamp_seconds"] == NOW - 60
    assert m["blocklist_agent_metrics_timestamp_seconds"] == NOW
    assert m['blocklist_agent_info{version="0.1.0"}'] == 1


def test_isolation_is_zero_when_not_recorded_and_one_when_active() -> None:
    assert render()["blocklist_agent_isolation_active"] == 0
    isolated = {**status(), "isolation": {"active": True, "peers": ["ch-voisin"]}}
    m = render(status=isolated)
    assert m["blocklist_agent_isolation_active"] == 1
    assert m['blocklist_agent_isolation_peer{peer="ch-voisin"}'] == 1
    restored = {**status(), "isolation": {"active": False, "peers": []}}
    assert render(status=restored)["blocklist_agent_isolation_active"] == 0
    # the state `isolate` keeps (agent/isolation.py), given directly
    live = {"active": True, "since": 1_799_990_000, "deadline": None,
            "peers": [{"name": "ch-voisin", "cidrs": ["203.0.113.0/24"], "since": 1}]}
    m = render(isolation=live)
    assert m["blocklist_agent_isolation_active"] == 1
    assert m["blocklist_agent_isolation_since_timestamp_seconds"] == 1_799_990_000
    assert m['blocklist_agent_isolation_peer{peer="ch-voisin"}'] == 1


def test_backend_counters_and_offenders_when_given() -> None:
    m = render(counters={"v4": 1234, "names": 5},
               offenders=[{"address": "10.1.2.3"}, {"address": "10.1.2.4"}])
    assert m['blocklist_agent_blocked_packets_total{set="v4"}'] == 1234
    assert m["blocklist_agent_offenders"] == 2
    assert m['blocklist_agent_offender{address="10.1.2.3"}'] == 1
    plain = render()
    assert not any("blocked_packets" in k or "offender" in k for k in plain)


def test_offender_series_are_capped_but_counted() -> None:
    many = [{"address": f"10.0.{i // 256}.{i % 256}"} for i in range(500)]
    m = render(offenders=many)
    assert m["blocklist_agent_offenders"] == 500
    assert sum(k.startswith("blocklist_agent_offender{") for k in m) == metrics.MAX_OFFENDERS


def test_label_values_are_escaped() -> None:
    odd = {"feeds": {"a": {"error": {"reason": 'x"y\\z\nw'}}}}
    text = metrics.render(odd, enforced={}, applied_at=None, now=NOW)
    assert 'reason="x\\"y\\\\z\\nw"' in text
    parse(text)


def test_empty_state_renders_a_valid_file() -> None:
    m = parse(metrics.render({}, enforced={}, applied_at=None, now=NOW))
    assert m["blocklist_agent_isolation_active"] == 0
    assert m["blocklist_agent_enforced_total"] == 0
    assert "blocklist_agent_last_sync_applied" not in m


def test_write_is_atomic_and_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "blocklist-agent.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    metrics.write(target, "blocklist_agent_x 1\n")
    assert target.read_text() == "blocklist_agent_x 1\n"
    assert target.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert os.listdir(tmp_path) == ["blocklist-agent.prom"]  # no temp file left behind
