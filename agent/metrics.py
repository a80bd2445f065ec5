"""Prometheus metrics as a node_exporter textfile (`metrics_file` in the configuration).

The gateway already runs node_exporter in most hospital fleets; a textfile needs no open port
on a gateway, no HTTP server in the agent, and survives the agent being down (the file's
`blocklist_agent_metrics_timestamp_seconds` then stops moving, which is itself an alert).

`render()` is a pure function of what the agent recorded (status.json, the applied counts), of
what the firewall backend counts (blocked packets, offenders) and, from the daemon, of what the
kernel holds now (table present, isolation sets) and the repairs its watcher made, so a test can
check every line.
`write()` replaces the file atomically: node_exporter must never read half a file.

Gauges describe the last attempt, not totals since start: `feed_rejected` is how many entries
the last processing of the feed refused, per reason, which is what an operator compares
between two alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import __version__
from agent.merge import ENFORCING
from agent.util.fsutil import atomic_write

PREFIX = "blocklist_agent_"
SYNC_RESULTS = ("ok", "partial", "held", "error")
MAX_OFFENDERS = 100  # labelled series; the count is exact whatever the number


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(round(value, 3))


def _timestamp(text: object) -> float | None:
    """Seconds since the epoch from the ISO 8601 times of status.json ('…Z'), else None."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _Family:
    """One metric name with its HELP and TYPE lines and its samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = PREFIX + name
        self.head = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {kind}"]
        self.samples: list[str] = []

    def add(self, value: float | None, **labels: object) -> None:
        if value is None:
            return
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        self.samples.append(f"{self.name}{{{label_text}}} {_number(value)}" if label_text
                            else f"{self.name} {_number(value)}")


class _Families:
    def __init__(self) -> None:
        self.items: dict[str, _Family] = {}

    def __call__(self, name: str, kind: str, help_text: str) -> _Family:
        family = self.items.get(name)
        if family is None:
            family = self.items[name] = _Family(name, kind, help_text)
        return family

    def text(self) -> str:
        lines: list[str] = []
        for family in self.items.values():
            if family.samples:
                lines += family.head + family.samples
        return "\n".join(lines) + "\n"


def render(
    status: Mapping[str, Any],
    *,
    enforced: Mapping[str, int],
    applied_at: float | None,
    now: float,
    isolation: Mapping[str, Any] | None = None,
    counters: Mapping[str, int] | None = None,
    offenders: Sequence[Mapping[str, Any]] | None = None,
    kernel: Mapping[str, Any] | None = None,
    repairs: Mapping[str, int] | None = None,
) -> str:
    """The textfile for `status` (status.json) and the enforced set sizes, at time `now`.

    `isolation` is the kill switch's state ({"active", "since", "peers": [{"name"}...]});
    without it, status["isolation"] is used if present, else "not isolated". `counters` (set ->
    packets dropped) and `offenders` (internal hosts that hit the blocklist) come from the
    firewall backend when it provides them; None leaves them out. `kernel` ({"table_present",
    "in_sync", "mismatch"}) and `repairs` (kind -> count since the daemon started) come from
    the daemon's kernel watcher.
    """
    m = _Families()
    m("info", "gauge", "Version of the agent that wrote this file.").add(1, version=__version__)
    m("metrics_timestamp_seconds", "gauge",
      "When this file was written; stops moving when the agent is down.").add(now)
    _feeds(m, status.get("feeds") or {}, now)
    _sync(m, status.get("last_sync") or {})
    sets = m("enforced_entries", "gauge", "Entries enforced, per nftables set or RPZ part.")
    for name, count in sorted(enforced.items()):
        sets.add(count, set=name)
    m("enforced_total", "gauge", "Entries enforced in all sets.").add(
        sum(c for n, c in enforced.items() if n in ENFORCING))
    m("applied_timestamp_seconds", "gauge", "When the enforced state was last applied.").add(
        applied_at)
    _isolation(m, isolation if isolation is not None else status.get("isolation"))
    if kernel is not None:
        _kernel(m, kernel)
    if repairs is not None:
        _repairs(m, repairs)
    if counters is not None:
        packets = m("blocked_packets_total", "counter",
                    "Packets dropped by the agent's nftables rules, per set that matched.")
        for name, value in sorted(counters.items()):
            packets.add(value, set=name)
    if offenders is not None:
        _offenders(m, offenders)
    return m.text()


def _feeds(m: _Families, feeds: Mapping[str, Any], now: float) -> None:
    for name, feed in sorted(feeds.items()):
        if not isinstance(feed, Mapping):
            continue
        serial = feed.get("serial")
        m("feed_serial", "gauge", "Serial of the enforced copy of the feed.").add(
            serial if isinstance(serial, int) else None, feed=name)
        issued = _timestamp(feed.get("issued"))
        m("feed_issued_timestamp_seconds", "gauge",
          "When the publisher issued the enforced copy.").add(issued, feed=name)
        m("feed_age_seconds", "gauge", "Age of the enforced copy (now minus its issue time).").add(
            None if issued is None else now - issued, feed=name)
        m("feed_expiry_timestamp_seconds", "gauge",
          "When the enforced copy expires (the publisher must re-sign before).").add(
            _timestamp(feed.get("expires")), feed=name)
        m("feed_stale", "gauge", "1 if the enforced copy is past its expiry.").add(
            bool(feed.get("stale")), feed=name)
        m("feed_last_success_timestamp_seconds", "gauge",
          "Last refresh that was fetched, verified and applied.").add(
            _timestamp(feed.get("last_success")), feed=name)
        error = feed.get("error")
        m("feed_up", "gauge", "1 if the last refresh of the feed succeeded.").add(
            error is None, feed=name)
        failures = feed.get("failures")
        m("feed_consecutive_failures", "gauge", "Failed refreshes in a row.").add(
            failures if isinstance(failures, int) else 0, feed=name)
        if isinstance(error, Mapping):
            m("feed_error", "gauge", "The reason of the last refusal of the feed.").add(
                1, feed=name, reason=error.get("reason", "error"))
        for key, help_text in (("parsed", "Entries read from the feed at the last processing."),
                               ("accepted", "Entries accepted at the last processing.")):
            value = feed.get(key)
            m(f"feed_{key}", "gauge", help_text).add(
                value if isinstance(value, int) else None, feed=name)
        rejected = m("feed_rejected", "gauge",
                     "Entries refused at the last processing, per reason "
                     "(malformed, or the guard rail that refused them).")
        rejected.add(feed.get("parse_rejects") or 0, feed=name, reason="malformed")
        for reason, count in sorted((feed.get("guard_rejects") or {}).items()):
            rejected.add(count, feed=name, reason=reason)


def _sync(m: _Families, last: Mapping[str, Any]) -> None:
    if not last:
        return
    m("last_sync_timestamp_seconds", "gauge", "When the last sync ran.").add(
        _timestamp(last.get("time")))
    duration = last.get("duration")
    m("last_sync_duration_seconds", "gauge", "How long the last sync took.").add(
        float(duration) if isinstance(duration, int | float) else None)
    result = m("last_sync_result", "gauge",
               "1 for the result of the last sync: ok, partial (a feed refused), held "
               "(guards.max_change) or error (apply failed).")
    for value in SYNC_RESULTS:
        result.add(last.get("result") == value, result=value)
    m("last_sync_applied", "gauge", "1 if the last sync was applied.").add(
        bool(last.get("applied")))


def _isolation(m: _Families, isolation: object) -> None:
    """Isolation as `isolate` records it: {"active": bool, "since": ts, "peers": [...]}."""
    active = False
    peers: Iterable[object] = ()
    since = None
    if isinstance(isolation, bool):
        active = isolation
    elif isinstance(isolation, Mapping):
        active = bool(isolation.get("active"))
        since = _timestamp(isolation.get("since")) if active else None
        raw = isolation.get("peers")
        peers = raw if isinstance(raw, list | tuple) else ()
    m("isolation_active", "gauge", "1 while internet egress is cut (the kill switch).").add(active)
    m("isolation_since_timestamp_seconds", "gauge", "When the current isolation started.").add(
        since)
    expires = isolation.get("expires_in") if isinstance(isolation, Mapping) else None
    m("isolation_expires_seconds", "gauge",
      "Seconds before the kernel lifts the isolation by itself (its --for deadline).").add(
        expires if active and isinstance(expires, int | float) else None)
    quarantined = m("isolation_peer", "gauge", "1 for each partner network quarantined.")
    for peer in peers:
        name = peer.get("name") if isinstance(peer, Mapping) else peer
        if name:
            quarantined.add(1, peer=name)


KINDS = ("table_deleted", "ruleset_changed", "element_deleted", "element_added",
         "isolation_lifted", "events_lost")


def _kernel(m: _Families, kernel: Mapping[str, Any]) -> None:
    m("kernel_table_present", "gauge",
      "1 if the agent's nftables table is in the kernel (0: nothing enforced there).").add(
        bool(kernel.get("table_present")))
    in_sync = kernel.get("in_sync")
    m("kernel_in_sync", "gauge",
      "1 if the table's chains and sets are as last applied.").add(
        None if in_sync is None else bool(in_sync))
    m("kernel_mismatch", "gauge",
      "1 while the kernel and the agent's intent disagree (being repaired).").add(
        bool(kernel.get("mismatch")))


def _repairs(m: _Families, repairs: Mapping[str, int]) -> None:
    """Every kind, zeros included: an alert on increase() needs the series to exist first."""
    family = m("repairs_total", "counter",
               "Repairs of the agent's table after a change made outside the agent, by what "
               "was found.")
    for kind in sorted(set(KINDS) | set(repairs)):
        family.add(int(repairs.get(kind, 0)), kind=kind)


def _offenders(m: _Families, offenders: Sequence[Mapping[str, Any]]) -> None:
    m("offenders", "gauge", "Internal hosts that tried to reach a blocked destination "
      "recently (firewall.offender_timeout).").add(len(offenders))
    hosts = m("offender", "gauge", "1 for each offender (the machines to check first).")
    for entry in offenders[:MAX_OFFENDERS]:
        address = entry.get("address") or entry.get("ip") or entry.get("addr")
        if address:
            hosts.add(1, address=address)


def write(path: str | Path, text: str) -> None:
    """Replace the textfile atomically (node_exporter reads *.prom files at any moment)."""
    atomic_write(Path(path), text.encode(), 0o644)
