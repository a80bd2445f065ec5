"""What the daemon tells people and machines about its syncs: journal events with fields
(`journalctl FEED=x`), the one-line STATUS= that `systemctl status` shows, and the metrics
textfile. All of it is best effort and none of it decides anything.

What is enforced and whether the gateway is isolated are said from the kernel as the watcher
last saw it (agent.daemon.kernelwatch.KernelFacts), never from the records alone: a flushed
ruleset must not leave STATUS= saying "enforcing N entries" or the metric isolation_active 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent import isolation, metrics
from agent.backends.base import Backend
from agent.config import Config
from agent.daemon.kernelfacts import KernelFacts, Repair
from agent.daemon.kernelwant import BIG_SETS
from agent.daemon.nftmonitor import canonical
from agent.daemon.notify import Journal
from agent.pipeline import SyncResult
from agent.state import StateStore

log = logging.getLogger(__name__)
T = TypeVar("T")


def journal_sync(journal: Journal, result: SyncResult) -> None:
    """One event per feed refreshed, then one for the sync."""
    for o in result.feeds:
        if not o.refreshed:
            continue
        level = logging.INFO if o.error is None else logging.ERROR
        text = f"feed {o.name}: {o.status}"
        if o.record is not None:
            text += f", serial {o.record.serial}"
        if o.error is not None:
            text += f": {o.error}"
        journal.event(level, text, ACTION="refresh", FEED=o.name, RESULT=o.status,
                      SERIAL=o.record.serial if o.record else None,
                      REASON=o.error.reason if o.error else None,
                      ACCEPTED=o.accepted)
    level = {"ok": logging.INFO, "partial": logging.WARNING,
             "held": logging.WARNING}.get(result.result, logging.ERROR)
    text = f"sync {result.result}: {result.blocklist.total} entries"
    if not any(o.refreshed for o in result.feeds):  # start-up, local change, retry
        level = logging.ERROR if result.error else logging.INFO
        text = f"last good state re-applied: {result.blocklist.total} entries"
    if result.plan.held:
        text += f"; plan HELD: {result.plan.held}"
    if result.error is not None:
        text += f"; apply failed, the previous state stays enforced: {result.error}"
    journal.event(level, text, ACTION="sync", RESULT=result.result,
                  APPLIED=int(result.applied), ENFORCED=result.blocklist.total,
                  DURATION=round(result.timings.get("total", 0.0), 3))


def journal_repair(journal: Journal, repair: Repair) -> None:
    """One event per repair of the table: what was found, what the writer did, how fast."""
    if repair.ok:
        text = f"kernel repaired in {repair.seconds:.2f} s: {repair.found}; {repair.done}"
    else:
        text = f"kernel NOT repaired: {repair.found}; {repair.done}"
    journal.event(logging.WARNING if repair.ok else logging.ERROR, text, ACTION="repair",
                  KIND=repair.kind, RESULT="ok" if repair.ok else "error", FOUND=repair.found,
                  DURATION=round(repair.seconds, 3))


def kernel_head(kernel: KernelFacts, table: str) -> tuple[str, bool]:
    """What the kernel says, for the start of STATUS=, and whether the blocklist is there."""
    iso = kernel.isolation
    parts = []
    if iso.active:
        left = [v for v in iso.wan.values() if v is not None]
        until = f", {human(min(left))} left" if left else ""
        parts.append(f"ISOLATED: {', '.join(sorted(iso.wan))} cut in the kernel{until}")
    elif kernel.intent_active:
        parts.append("ISOLATION NOT IN THE KERNEL (iso_wan is empty)")
    if iso.peers:
        parts.append(f"{len(iso.peers)} peer prefix(es) quarantined")
    if not kernel.readable:
        parts.append(f"kernel unreadable: {kernel.problem or 'nft failed'}")
        return "; ".join(parts), False
    if not kernel.table_present:
        parts.append(f"NOT ENFORCED: table inet {table} is absent from the kernel")
        return "; ".join(parts), False
    if kernel.problem:
        parts.append(f"kernel differs: {kernel.problem}")
    return "; ".join(parts), True


def summary(result: SyncResult, next_refresh_in: float | None,
            kernel: KernelFacts | None = None, table: str = "") -> str:
    """The STATUS= line after a sync: what is enforced, what is wrong, what happens next.

    With `kernel` (the nftables firewall is watched), what the kernel holds comes first."""
    failing = sorted(o.name for o in result.feeds if o.failing)
    lead, enforcing = kernel_head(kernel, table) if kernel is not None else ("", True)
    if result.error is not None:
        head = f"degraded: apply failed ({result.error.what}); the previous state stays " \
               "enforced, retrying"
    elif result.plan.held:
        head = "plan HELD (guards.max_change): check it, then `blocklist-agent sync --force`"
    elif enforcing:
        head = f"enforcing {result.blocklist.total} entries"
    else:
        head = "repairing"
    if lead:
        head = f"{lead}; {head}"
    if failing:
        head += f"; feeds failing: {', '.join(failing)}"
    if next_refresh_in is not None:
        head += f"; next refresh in {human(next_refresh_in)}"
    return head


def human(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def write_metrics(path: str | Path, config: Config, store: StateStore,
                  backends: Sequence[Backend], now: float, kernel: KernelFacts | None = None,
                  repairs: Mapping[str, int] | None = None) -> None:
    """The textfile: what status.json recorded, the kill switch, the firewall's counters.

    With `kernel`, the enforced and isolation figures are the kernel's (an absent table
    enforces nothing, whatever was recorded). Raises OSError if the file cannot be written (the
    caller says so, once)."""
    status = store.load_status()
    table = config.firewall.table
    counters = offenders = None
    for backend in backends:  # the first backend that counts something provides it
        if counters is None:
            counters = _ask(backend, "counters", backend.counters, table)
        if offenders is None:
            offenders = _ask(backend, "offenders", backend.offenders, table)
    intent = isolation.load(store).live(int(now))
    enforced = status.get("enforced") or {}
    iso: Mapping[str, Any] = intent.to_json()
    kernel_doc = None
    if kernel is not None:
        if not (kernel.readable and kernel.table_present):
            enforced = {n: 0 if n in BIG_SETS else c for n, c in enforced.items()}
        iso = kernel_isolation(kernel, intent)
        kernel_doc = {"table_present": kernel.readable and kernel.table_present,
                      "in_sync": kernel.in_sync, "mismatch": kernel.isolation.active
                      != intent.active or bool(kernel.problem)}
    metrics.write(path, metrics.render(
        status, enforced=enforced, applied_at=store.applied_mtime(), now=now, isolation=iso,
        counters=counters, offenders=offenders, kernel=kernel_doc, repairs=repairs))


def kernel_isolation(kernel: KernelFacts, intent: isolation.IsolationState) -> dict[str, Any]:
    """The kill switch as the kernel enforces it, named with the intent where they agree: a
    quarantined prefix is shown by its peer's name, one nobody recorded by the prefix."""
    names: dict[str, str] = {}
    for peer in intent.peers:
        for cidr in peer.cidrs:
            names[canonical(cidr)] = peer.name
    peers = sorted({names.get(canonical(p), p) for p in kernel.isolation.peers})
    active = kernel.isolation.active
    left = [v for v in kernel.isolation.wan.values() if v is not None]
    return {"active": active, "since": intent.since if active and intent.active else None,
            "peers": [{"name": p} for p in peers],
            "expires_in": min(left) if active and left else None}


def _ask(backend: Backend, what: str, read: Callable[[str], T | None], table: str) -> T | None:
    try:
        return read(table)
    except Exception as exc:  # a missing table, nft not there, ...: that series is left out
        log.debug("no %s from %s: %s", what, backend.name, exc)
        return None
