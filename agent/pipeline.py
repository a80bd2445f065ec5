"""One sync: fetch -> verify -> parse -> validate -> merge -> plan -> render -> apply -> record.

The orchestration only: each stage lives in its own module and the side effects come in through
three small interfaces (a `Fetcher`, the `Backend`s, the `StateStore`), so the daemon, the CLI,
the tests and the benchmark run exactly this code. What the caller reads from elsewhere (the
local overrides, the public-suffix list, the gateway's own addresses, the time) comes in as
values; which feeds to download comes in as `refresh` (the daemon refreshes each feed on its own
schedule, the others are used from their last good copy without any network).

Failure policy (docs/design.md §2): a feed that cannot be fetched, fails verification or is
mostly malformed is reported and its last good copy stays in the merge, because dropping a feed
would unblock everything it lists; any other fault of one feed is contained the same way
(agent.feedstep). A plan that changes too much is held. Each backend is applied even when
another one failed, and reported on its own: an enforcement point that works is never held back
by one that does not. Nothing is recorded unless every backend applied, so the next run starts
from the truth; a record that cannot be written (a full disk) is an error of the sync that says
what was applied and what was not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import feedcache, merge_delta, mergestep, overrides, shortcut
from agent.backends.base import ApplyContext, Backend
from agent.config import Config
from agent.errors import AgentError, StateError, contained
from agent.feedstep import (
    SAMPLE,
    Budget,
    BudgetFetcher,
    Clock,
    FeedOutcome,
    guard_lines,
    process_feed,
)
from agent.fetch import Fetcher
from agent.formats.policy import parse_payloads
from agent.guards import Policy
from agent.lifelines import Facts
from agent.merge import Blocklist
from agent.plan import Plan, allowed_only, deescalation, make_plan
from agent.psl import PublicSuffixList
from agent.psl import default as public_suffixes
from agent.render.nft_blocklist import render_table
from agent.render.rpz import render_zone
from agent.state import StateStore
from agent.util.fsutil import atomic_write
from agent.util.gcpause import collector_paused
from agent.util.timefmt import utc_now

__all__ = ["SAMPLE", "FeedOutcome", "SyncResult", "parse_payloads", "process_feed", "run"]
log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    feeds: list[FeedOutcome]
    overrides: overrides.Overrides
    blocklist: Blocklist
    plan: Plan
    applied: bool = False
    dry_run: bool = False
    error: AgentError | None = None
    rendered: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what each backend did
    timings: dict[str, float] = field(default_factory=dict)
    backends: list[dict[str, Any]] = field(default_factory=list)  # name, applied, note, error
    repairs: list[dict[str, str]] = field(default_factory=list)  # damaged state files set aside
    deescalated: Plan | None = None  # the removals applied at once while the plan is held

    @property
    def ok(self) -> bool:
        return (self.error is None and self.plan.held is None
                and not any(f.failing for f in self.feeds))

    @property
    def result(self) -> str:
        if self.error is not None:
            return "error"
        if self.plan.held:
            return "held"
        return "ok" if self.ok else "partial"

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result, "dry_run": self.dry_run, "applied": self.applied,
            "error": self.error.to_dict() if self.error else None,
            "feeds": [f.to_dict() for f in self.feeds],
            "overrides": {
                "allow": len(self.overrides.allow), "deny": len(self.overrides.deny),
                "expired": len(self.overrides.expired),
                "rejects": [r.to_dict() for r in self.overrides.rejects],
            },
            "enforced": self.blocklist.counts(),
            "plan": self.plan.summary(),
            "deescalated": self.deescalated.summary() if self.deescalated else None,
            "rendered": self.rendered,
            "applied_notes": self.notes,
            "backends": self.backends,
            "state_repairs": self.repairs,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@collector_paused()  # millions of objects and no cycles: agent.util.gcpause
def run(
    config: Config,
    *,
    fetcher: Fetcher,
    store: StateStore,
    local: overrides.Overrides,
    backends: Sequence[Backend] = (),
    dry_run: bool = False,
    force: bool = False,
    render_to: Path | None = None,
    own_addresses: Sequence[str] = (),
    facts: Facts | None = None,
    psl: PublicSuffixList | None = None,
    refresh: Collection[str] | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> SyncResult:
    """One full pass. Never raises for a feed's or a backend's failure: it is in the result.

    `local` are the overrides read from local_dir (overrides.load, at the same `now`);
    `refresh` names the feeds to download (None: every feed), the others are merged from their
    last good copy; `psl` is the public-suffix list (None: the guards load the default one);
    `facts` are the lifelines and protected names' addresses found at the edge (lifelines.gather);
    `cancel`, once set, skips the downloads still to come (the daemon has something more urgent).
    """
    now = now or utc_now()
    say = progress or (lambda _msg: None)
    clock = Clock()
    started_all = time.perf_counter()
    store.quarantine.dry_run = dry_run
    if not dry_run:
        _sweep(config, store)
    facts = facts or Facts()
    policy = Policy.from_config(config, own_addresses=own_addresses, lifelines=facts.lifelines,
                                protected_addresses=facts.protected,
                                psl=psl if psl is not None else public_suffixes(),
                                now=int(now.timestamp()))
    budget = Budget(config, cancel)
    policy_print = feedcache.policy_fingerprint(policy)
    fetch = BudgetFetcher(fetcher, budget)

    outcomes = []
    for feed in config.feeds:
        due = refresh is None or feed.name in refresh
        say(f"feed {feed.name}: fetching {feed.url}" if due
            else f"feed {feed.name}: using its last good copy")
        outcomes.append(process_feed(feed, fetch, store, policy, now, budget, clock,
                                     with_index=not dry_run, refresh=due,
                                     policy_print=policy_print))

    started = time.perf_counter()
    # a local deny is the operator naming a value: it may block a lifeline (a compromised feed
    # server), which no feed can; every other guard applies to it as to a feed
    deny_policy = Policy.from_config(config, own_addresses=own_addresses,
                                     protected_addresses=facts.protected, psl=policy.psl,
                                     now=policy.now)
    local_deny = deny_policy.check(o.indicator for o in local.deny)
    for bad in local_deny.rejected:
        log.warning("local deny %s ignored: %s", bad.indicator.value, bad.detail)
    clock.add("guards", started)

    # `role: allow` feeds are known-good lists: their entries are allowed like local allows
    allow_feeds = {feed.name for feed in config.feeds if feed.role == "allow"}
    blocking = [o for o in outcomes if o.name not in allow_feeds]
    previous = store.load_applied()
    meta = previous[1] if previous else {}
    inputs = shortcut.inputs(config, [(o.name, o.ident) for o in outcomes], local,
                             policy_print)
    unchanged = shortcut.unchanged(previous, inputs, () if dry_run else backends, ApplyContext(
        config=config, store=store, rpz_serial=int(meta.get("rpz_serial", 0)),
        generation=int(meta.get("generation", 0))))
    merged_print = merge_delta.merge_print(local_deny.accepted, [o.indicator for o in local.allow],
                                           [o.ident for o in outcomes if o.name in allow_feeds])
    started = time.perf_counter()
    if previous is not None and unchanged is not None:  # nothing to merge, plan or apply
        blocklist = previous[0]
        plan = shortcut.empty_plan(blocklist, max_change=config.guards.max_change, force=force)
        baseline: Blocklist | None = blocklist
    else:
        say("merging")  # (an allow feed's entries are built only here: it may be big)
        allow = [*(o.indicator for o in local.allow),
                 *(i for o in outcomes if o.name in allow_feeds for i in o.all_indicators())]
        blocklist, plan, baseline = mergestep.merge_and_plan(
            config, previous, blocking, local_deny.accepted, allow, merged_print, store,
            force, clock)
    clock.add("plan", started)

    result = SyncResult(outcomes, local, blocklist, plan, dry_run=dry_run)
    rpz_serial = max(int(meta.get("rpz_serial", 0)) + 1, int(now.timestamp()))
    if render_to is not None:
        say(f"rendering to {render_to}")
        started = time.perf_counter()
        render_to.mkdir(parents=True, exist_ok=True)
        nft_path, zone_path = render_to / "ruleset.nft", render_to / "rpz.zone"
        atomic_write(nft_path, render_table(config.firewall, blocklist).encode())
        atomic_write(zone_path, render_zone(config.dns, blocklist, rpz_serial).encode())
        result.rendered = {"ruleset.nft": str(nft_path), "rpz.zone": str(zone_path)}
        clock.add("render", started)

    if not dry_run and plan.held is None:
        blocklist = result.blocklist = _staged(store, blocklist)
        ctx = ApplyContext(config=config, store=store, rpz_serial=rpz_serial,
                           generation=int(meta.get("generation", 0)) + 1)
        if unchanged is not None:  # the enforcement points hold the recorded generation
            ctx = replace(ctx, rpz_serial=int(meta.get("rpz_serial", 0)),
                          generation=ctx.generation - 1)
        started = time.perf_counter()
        _apply(result, () if unchanged is not None else backends, plan, blocklist, ctx, say)
        result.notes.extend(unchanged or ())
        clock.add("apply", started)
        store.digests.flush()  # the feeds' new results, kept once the change is enforced
        if result.error is None:
            started = time.perf_counter()
            _record(result, store, ctx, now, {
                "inputs": inputs, "merge": merged_print,
                "digests": {o.name: o.ident for o in blocking if o.digest is not None}})
            clock.add("record", started)
    elif plan.held:
        log.warning("plan held: %s", plan.held)
        if not dry_run and baseline is not None:
            _deescalate(result, config, store, backends, baseline, meta, rpz_serial, now, say)

    store.digests.flush()  # (a held plan, a dry run's nothing)
    result.timings = dict(clock.timings, total=time.perf_counter() - started_all)
    result.repairs = store.repairs()
    if not dry_run:
        _record_status(result, store, now, refresh)
    return result


def _deescalate(result: SyncResult, config: Config, store: StateStore,
                backends: Sequence[Backend], baseline: Blocklist, meta: dict[str, Any],
                rpz_serial: int, now: datetime, say: Callable[[str], None]) -> None:
    """Apply the part of a held plan that only unblocks (docs/design.md §5): allows are never
    held. The feeds' new data is not recorded (what they add is still held); the applied record
    is, so that the next plan starts from what the kernel and the resolver hold."""
    partial = deescalation(baseline, result.blocklist)
    step = make_plan(baseline, partial, max_change=config.guards.max_change)
    if step.held:  # the removals alone are over max_change (an emptied feed): only the allows
        partial = deescalation(baseline, allowed_only(
            baseline, [o.indicator for o in result.overrides.allow]))
        step = make_plan(baseline, partial, max_change=1.0)
    if step.empty:
        return
    ctx = ApplyContext(config=config, store=store, rpz_serial=rpz_serial,
                       generation=int(meta.get("generation", 0)) + 1)
    say("applying the removals of the held plan")
    _apply(result, backends, step, partial, ctx, say)
    if result.error is not None:
        return
    feeds = {o.name: o.record.serial for o in result.feeds if o.record is not None}
    try:
        store.save_applied(partial, {**meta, "rpz_serial": rpz_serial,
                                     "generation": ctx.generation,
                                     "applied_at": int(now.timestamp()), "feeds": feeds})
    except Exception as exc:
        result.error = _write_error(exc, "applied.json")
        return
    result.deescalated = step
    log.warning("plan held, its removals applied at once: -%d entries", step.removed)


def _sweep(config: Config, store: StateStore) -> None:
    """What crashed runs left (temp files, stray generations): removed before anything new."""
    zonefile = Path(config.dns.zonefile)
    store.digests.forget({feed.name for feed in config.feeds})
    try:
        removed = store.sweep([(zonefile.parent, f".{zonefile.name}"),
                               (Path(config.local_dir), ".cli."),
                               (Path("/tmp"), "blocklist-agent-")])
    except OSError as exc:
        log.warning("could not remove the leftovers of earlier runs: %s", exc)
        return
    if removed:
        log.warning("removed %d leftover(s) of interrupted runs: %s", len(removed),
                    ", ".join(str(p) for p in removed[:5]))


def _apply(result: SyncResult, backends: Sequence[Backend], plan: Plan, blocklist: Blocklist,
           ctx: ApplyContext, say: Callable[[str], None]) -> None:
    """Every backend, each on its own: the first error is the sync's, all are in `backends`."""
    for backend in backends:
        say(f"applying to {backend.name}")
        try:
            note = backend.apply(plan, blocklist, ctx)
        except Exception as exc:
            error = contained(exc, stage="applying", where=f"backend {backend.name}",
                              keep="the previous enforcement of this backend stays in place")
            log.error("apply to %s failed: %s", backend.name, error)
            result.backends.append({"name": backend.name, "applied": False, "note": None,
                                    "error": error.to_dict()})
            result.error = result.error or error
            continue
        result.notes.append(note)
        result.backends.append({"name": backend.name, "applied": True, "note": note,
                                "error": None})
        log.info("%s", note)


def _staged(store: StateStore, blocklist: Blocklist) -> Blocklist:
    """The blocklist on its base (StateStore.staged), or as it is when the base cannot be
    written now (a full disk): the apply goes on, the record then reports what failed."""
    try:
        return store.staged(blocklist)
    except OSError as exc:
        log.warning("the applied base could not be written before the apply: %s", exc)
        return blocklist


def _record(result: SyncResult, store: StateStore, ctx: ApplyContext, now: datetime,
            merged: dict[str, Any]) -> None:
    """Each feed's new copy, then applied.json. A feed whose copy cannot be saved is that
    feed's error (the kernel has it; the next sync fetches it again); applied.json that
    cannot be written is the sync's error: the backends applied, the record did not."""
    for i, o in enumerate(result.feeds):
        if o.data is None:
            continue
        try:
            if o.data.fresh:
                store.save_feed(o.data.record, o.data.files, o.index,
                                guard_lines(o.guard.rejected))
            else:
                store.update_feed_record(o.data.record)
        except Exception as exc:
            error = _write_error(exc, f"the new copy of feed {o.name}")
            result.feeds[i] = replace(o, error=error, status="kept")
    feeds = {o.name: o.record.serial for o in result.feeds if o.record is not None}
    try:
        store.save_applied(result.blocklist, {
            "rpz_serial": ctx.rpz_serial, "generation": ctx.generation,
            "applied_at": int(now.timestamp()), "feeds": feeds, **merged})
    except Exception as exc:
        result.error = _write_error(exc, "applied.json")
        return
    result.applied = True


def _write_error(exc: Exception, what: str) -> AgentError:
    if isinstance(exc, OSError):
        error: AgentError = StateError(
            f"applied to the kernel and the resolver, but {what} could not be written: "
            f"{exc.strerror or exc}", where=str(exc.filename or ""), reason="state-write",
            hint="free space or fix the state directory (df -h, dmesg); the next sync records "
            "it; until then `status` and `why` show the previous record")
    else:
        error = contained(exc, stage="recording", where=what, keep="the next sync tries again")
    log.error("%s", error)
    return error


def _record_status(result: SyncResult, store: StateStore, now: datetime,
                   refresh: Collection[str] | None) -> None:
    """status.json; when even that cannot be written the journal says so (the `status`
    command then finds the disk problem itself, see StateStore.write_problem)."""
    try:
        store.record_sync(result.to_dict(), when=now, refreshed=refresh)
    except Exception as exc:
        error = _write_error(exc, "status.json")
        log.error("the outcome of this sync (%s) is not in status.json: %s", result.result,
                  error.what)
        result.error = result.error or error
