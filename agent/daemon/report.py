"""What the daemon tells people and machines about its syncs: journal events with fields
(`journalctl FEED=x`), the one-line STATUS= that `systemctl status` shows, and the metrics
textfile. All of it is best effort and none of it decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from agent import isolation, metrics
from agent.backends.base import Backend
from agent.config import Config
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


def summary(result: SyncResult, next_refresh_in: float | None) -> str:
    """The STATUS= line after a sync: what is enforced, what is wrong, what happens next."""
    failing = sorted(o.name for o in result.feeds if o.failing)
    if result.error is not None:
        head = f"degraded: apply failed ({result.error.what}); the previous state stays " \
               "enforced, retrying"
    elif result.plan.held:
        head = "plan HELD (guards.max_change): check it, then `blocklist-agent sync --force`"
    else:
        head = f"enforcing {result.blocklist.total} entries"
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
                  backends: Sequence[Backend], now: float) -> None:
    """The textfile: what status.json recorded, the kill switch, the firewall's counters.

    Raises OSError if the file cannot be written (the caller says so, once)."""
    status = store.load_status()
    table = config.firewall.table
    counters = offenders = None
    for backend in backends:  # the first backend that counts something provides it
        if counters is None:
            counters = _ask(backend, "counters", backend.counters, table)
        if offenders is None:
            offenders = _ask(backend, "offenders", backend.offenders, table)
    metrics.write(path, metrics.render(
        status, enforced=status.get("enforced") or {}, applied_at=store.applied_mtime(),
        now=now, isolation=isolation.load(store).live(int(now)).to_json(),
        counters=counters, offenders=offenders))


def _ask(backend: Backend, what: str, read: Callable[[str], T | None], table: str) -> T | None:
    try:
        return read(table)
    except Exception as exc:  # a missing table, nft not there, ...: that series is left out
        log.debug("no %s from %s: %s", what, backend.name, exc)
        return None
