"""One sync: fetch -> verify -> parse -> validate -> merge -> plan -> render -> apply -> record.

The orchestration only: each stage lives in its own module and the side effects come in through
three small interfaces (a `Fetcher`, the `Backend`s, the `StateStore`), so the daemon, the CLI,
the tests and the benchmark run exactly this code. What the caller reads from elsewhere (the
local overrides, the public-suffix list, the gateway's own addresses, the time) comes in as
values; which feeds to download comes in as `refresh` (the daemon refreshes each feed on its own
schedule, the others are used from their last good copy without any network).

Failure policy (docs/design.md §2): a feed that cannot be fetched, fails verification or is
mostly malformed is reported and its last good copy stays in the merge, because dropping a feed
would unblock everything it lists; a plan that changes too much is held; an apply that fails
leaves the kernel and resolver as they were. Nothing is recorded unless it was applied, so the
next run starts from the truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import feedcache, ledger, merge_delta, overrides, shortcut
from agent.backends.base import ApplyContext, Backend
from agent.config import Config, FeedConfig
from agent.digest import Digest, merged
from agent.errors import AgentError, FetchError
from agent.fetch import Fetcher
from agent.guards import GuardReject, GuardResult, Policy
from agent.indicators import Indicator, Reject
from agent.merge import Blocklist
from agent.plan import Plan, make_plan
from agent.psl import PublicSuffixList
from agent.psl import default as public_suffixes
from agent.render.nft_blocklist import render_table
from agent.render.rpz import render_zone
from agent.state import FeedRecord, StateStore
from agent.util.fsutil import atomic_write
from agent.util.timefmt import utc_now
from agent.verify import feed as source

log = logging.getLogger(__name__)
SAMPLE = 20  # rejects kept per feed for status and the plan printout


@dataclass(frozen=True)
class FeedOutcome:
    """What one feed contributed to this sync, and what went wrong with it."""

    name: str
    status: str  # updated | unchanged | kept (refused: last good kept) | failed (nothing kept)
    record: FeedRecord | None
    indicators: tuple[Indicator, ...] = ()
    parsed: int = 0
    parse_rejects: int = 0
    reject_samples: tuple[Reject, ...] = ()
    guard: GuardResult = field(default_factory=lambda: GuardResult((), ()))
    error: AgentError | None = None
    stale: bool = False  # the enforced copy is past its `expires`
    data: source.FeedData | None = None  # fresh data to record once applied
    index: tuple[str, ...] = ()
    refreshed: bool = True  # False: not due in this sync, its last good copy was used
    digest: Digest | None = None  # the validated result in compact form (agent.digest)

    @property
    def accepted(self) -> int:
        return self.digest.summary.accepted if self.digest is not None else len(self.indicators)

    @property
    def failing(self) -> bool:
        """Refused, or enforcing an expired copy: what makes a sync `partial`."""
        return self.error is not None or self.stale

    def to_dict(self) -> dict[str, Any]:
        rec = self.record
        return {
            "name": self.name, "status": self.status,
            "serial": rec.serial if rec else None,
            "publisher": rec.publisher if rec else None,
            "issued": rec.issued if rec else None,
            "expires": rec.expires if rec else None,
            "stale": self.stale,
            "parsed": self.parsed, "accepted": self.accepted,
            "parse_rejects": self.parse_rejects,
            "reject_samples": [r.to_dict() for r in self.reject_samples],
            "guard_rejects": (dict(self.digest.summary.guard_counts) if self.digest is not None
                              else self.guard.counts()),
            "guard_samples": [
                {"value": g.indicator.value, "reason": g.reason, "detail": g.detail}
                for g in self.guard.rejected[:SAMPLE]
            ],
            "error": self.error.to_dict() if self.error else None,
        }


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
            "rendered": self.rendered,
            "applied_notes": self.notes,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def add(self, stage: str, started: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started


def _guard_lines(rejected: Sequence[GuardReject]) -> list[str]:
    return [f"{g.indicator.value}\t{g.reason}\t{g.detail}\n" for g in rejected]


def process_feed(
    feed: FeedConfig, fetcher: Fetcher, store: StateStore, policy: Policy, now: datetime,
    clock: _Clock, *, with_index: bool, refresh: bool = True, policy_print: str | None = None,
    save: bool = True,
) -> FeedOutcome:
    """One feed's contribution: downloaded and verified if `refresh`, else its last good copy.

    Parse and guards run only for a copy whose validated result is not cached under the same
    key (agent.feedcache): an unchanged payload costs its re-verification and nothing more.
    """
    cached = store.load_feed(feed.name)
    if not refresh and cached is None:
        return FeedOutcome(feed.name, "failed", None, refreshed=False, error=FetchError(
            f"feed {feed.name!r} has no good copy yet and is not due for download",
            reason="pending", hint="the daemon retries it by itself; see `blocklist-agent status`"))
    error: AgentError | None = None
    data: source.FeedData | None = None
    if refresh:
        started = time.perf_counter()
        try:
            data = source.fetch(feed, fetcher, cached, now)
        except AgentError as exc:
            error = exc
        clock.add("fetch_verify", started)

    outcome_status = "updated" if data is not None and data.fresh else "unchanged"
    valid: feedcache.Validated | None = None
    if data is not None and data.fresh:
        started = time.perf_counter()
        try:
            valid = feedcache.validated(feed, data, policy, store, policy_print=policy_print,
                                        lines=with_index, save=save)
        except AgentError as exc:
            error, data = exc, None
        clock.add("parse", started)

    record = data.record if data is not None else (cached.record if cached else None)
    if valid is None:
        if error is not None:
            outcome_status = "kept" if cached else "failed"
            log.error("feed %s refused: %s", feed.name, error)
        if cached is None:
            return FeedOutcome(feed.name, "failed", None, error=error)
        started = time.perf_counter()
        try:
            cached_data = source.load_cached(feed, cached)
            valid = feedcache.validated(feed, cached_data, policy, store,
                                        policy_print=policy_print, lines=False, save=save)
        except AgentError as exc:
            log.error("feed %s: the last good copy is unusable: %s", feed.name, exc)
            return FeedOutcome(feed.name, "failed", cached.record, error=error or exc,
                               refreshed=refresh)
        finally:
            clock.add("parse", started)
    summary = valid.digest.summary
    return FeedOutcome(
        name=feed.name, status=outcome_status, record=record, parsed=summary.parsed,
        parse_rejects=summary.parse_rejects, reject_samples=summary.reject_samples,
        guard=GuardResult((), valid.rejected if valid.parsed_now and data is not None
                          and data.fresh else summary.guard_samples),
        error=error, stale=record is not None and source.expired(record, now),
        data=data, index=valid.index_lines, refreshed=refresh, digest=valid.digest,
    )


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
    psl: PublicSuffixList | None = None,
    refresh: Collection[str] | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> SyncResult:
    """One full pass. Never raises for a feed's or a backend's failure: it is in the result.

    `local` are the overrides read from local_dir (overrides.load, at the same `now`);
    `refresh` names the feeds to download (None: every feed), the others are merged from their
    last good copy; `psl` is the public-suffix list (None: the guards load the default one).
    """
    now = now or utc_now()
    say = progress or (lambda _msg: None)
    clock = _Clock()
    started_all = time.perf_counter()
    policy = Policy.from_config(config, own_addresses=own_addresses,
                                psl=psl if psl is not None else public_suffixes(),
                                now=int(now.timestamp()))

    policy_print = feedcache.policy_fingerprint(policy)
    outcomes = []
    for feed in config.feeds:
        due = refresh is None or feed.name in refresh
        say(f"feed {feed.name}: fetching {feed.url}" if due
            else f"feed {feed.name}: using its last good copy")
        outcomes.append(process_feed(feed, fetcher, store, policy, now, clock,
                                     with_index=not dry_run, refresh=due,
                                     policy_print=policy_print, save=not dry_run))

    started = time.perf_counter()
    local_deny = policy.check(o.indicator for o in local.deny)
    for bad in local_deny.rejected:
        log.warning("local deny %s ignored: %s", bad.indicator.value, bad.detail)
    clock.add("guards", started)

    previous = store.load_applied()
    meta = previous[1] if previous else {}
    inputs = shortcut.inputs(config, [(o.name, o.digest.ident if o.digest else None)
                                      for o in outcomes], local, policy_print)
    allow = [o.indicator for o in local.allow]
    unchanged = shortcut.unchanged(previous, inputs, () if dry_run else backends, ApplyContext(
        config=config, store=store, rpz_serial=int(meta.get("rpz_serial", 0)),
        generation=int(meta.get("generation", 0))))
    if previous is not None and unchanged is not None:  # nothing to merge, plan or apply
        blocklist = previous[0]
        plan = shortcut.empty_plan(blocklist, max_change=config.guards.max_change, force=force)
    else:
        say("merging")
        started = time.perf_counter()
        step = merge_delta.by_difference(
            previous, {o.name: o.digest for o in outcomes}, store, deny=local_deny.accepted,
            allow=allow, max_change=config.guards.max_change, force=force)
        if step is not None:  # only what the changed feeds moved
            blocklist, plan = step
            clock.add("merge", started)
        else:
            blocklist = merged([o.digest for o in outcomes if o.digest is not None],
                               [*(o.indicators for o in outcomes), local_deny.accepted],
                               allow=allow)
            clock.add("merge", started)
            started = time.perf_counter()
            # An empty enforcement (every feed failed on the first attempts) protects nothing:
            # the first real data is a first sync, not a 100 % change held for --force.
            baseline = (previous[0] if previous and (previous[0].total or not blocklist.total)
                        else None)
            plan = make_plan(baseline, blocklist,
                             max_change=config.guards.max_change, force=force)
            blocklist = ledger.following(baseline, plan, blocklist)
            clock.add("plan", started)

    if not dry_run and plan.held is None:
        blocklist = store.staged(blocklist)
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
        ctx = ApplyContext(config=config, store=store, rpz_serial=rpz_serial,
                           generation=int(meta.get("generation", 0)) + 1)
        if unchanged is not None:  # the enforcement points hold the recorded generation
            ctx = replace(ctx, rpz_serial=int(meta.get("rpz_serial", 0)),
                          generation=ctx.generation - 1)
        started = time.perf_counter()
        try:
            for backend in backends if unchanged is None else ():
                say(f"applying to {backend.name}")
                note = backend.apply(plan, blocklist, ctx)
                result.notes.append(note)
                log.info("%s", note)
        except AgentError as exc:
            log.error("apply failed: %s", exc)
            result.error = exc
        result.notes.extend(unchanged or ())
        clock.add("apply", started)
        if result.error is None:
            started = time.perf_counter()
            _record(store, outcomes, blocklist, ctx, now, {
                "inputs": inputs, "merge": merge_delta.merge_print(local_deny.accepted, allow),
                "digests": {o.name: o.digest.ident for o in outcomes if o.digest is not None}})
            result.applied = True
            clock.add("record", started)
    elif plan.held:
        log.warning("plan held: %s", plan.held)

    result.timings = dict(clock.timings, total=time.perf_counter() - started_all)
    if not dry_run:
        store.record_sync(result.to_dict(), when=now, refreshed=refresh)
    return result


def _record(store: StateStore, outcomes: Sequence[FeedOutcome], blocklist: Blocklist,
            ctx: ApplyContext, now: datetime, made_of: dict[str, Any]) -> None:
    """Fresh feed copies, then the blocklist and what it was made of (agent.shortcut,
    agent.merge_delta read it back)."""
    for o in outcomes:
        if o.data is None:
            continue
        if o.data.fresh:
            store.save_feed(o.data.record, o.data.files, o.index, _guard_lines(o.guard.rejected))
        else:
            store.update_feed_record(o.data.record)
    feeds = {o.name: o.record.serial for o in outcomes if o.record is not None}
    store.save_applied(blocklist, {"rpz_serial": ctx.rpz_serial, "generation": ctx.generation,
                                   "applied_at": int(now.timestamp()), "feeds": feeds,
                                   **made_of})
