"""One feed's part of a sync (fetch, verify, parse, validate), with its faults kept inside it.

docs/design.md §2: a feed that cannot be fetched, fails verification or is mostly malformed is
refused and its last good copy stays in the merge. Here that holds for *any* fault of one
feed, not only the foreseen ones: a parser's csv.Error, a 5000-digit serial, a RecursionError
in a deep JSON document or a bug are that feed's refusal (reason `internal-STAGE`, traceback in
the journal); the other feeds and the local overrides are merged and applied as usual.

The `Budget` bounds the whole sync: a total time (`sync_timeout`) after which the feeds still
to download are refused for this round, and caps on the payload bytes and indicators one sync
holds in memory (`max_sync_bytes`, `max_sync_indicators`), so that a publisher's mistake cannot
exhaust a 1 GB gateway. The daemon can also `cancel` the downloads still to come (SIGHUP, a new
local override) to get to the apply sooner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from agent import feedcache
from agent.config import Config, FeedConfig
from agent.digest import Digest
from agent.errors import AgentError, FetchError, FormatError, contained
from agent.fetch import Fetcher, Response, sources
from agent.formats.policy import ParsedFeed
from agent.guards import GuardReject, GuardResult, Policy
from agent.indicators import Indicator, Reject
from agent.state import CachedFeed, FeedRecord, StateStore
from agent.verify import feed as source

log = logging.getLogger(__name__)
SAMPLE = 20  # rejects kept per feed for status and the plan printout
_KEEP = "its last good copy stays enforced"
Parsed = ParsedFeed


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
    def ident(self) -> str | None:
        """What a record says of this feed's contribution (None: it contributes nothing)."""
        return self.digest.ident if self.digest is not None else None

    def all_indicators(self) -> tuple[Indicator, ...]:
        """Every accepted indicator (built from the digest: for the rare readers that need
        them one by one, such as a hold's contributors or an allow feed)."""
        if self.digest is not None:
            return tuple(self.digest.indicators())
        return self.indicators

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


class Clock:
    """Seconds spent per stage, summed over the feeds (the `timings` of a sync)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def add(self, stage: str, started: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started


class Budget:
    """What is left of one sync's time, payload bytes and indicators."""

    def __init__(self, config: Config, cancel: threading.Event | None = None) -> None:
        self.seconds = config.sync_timeout
        self.end = time.monotonic() + config.sync_timeout
        self.bytes_left = config.max_sync_bytes
        self.indicators_left = config.max_sync_indicators
        self.config = config
        self.cancel = cancel or threading.Event()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check_time(self, where: str) -> None:
        """Raise the refusal of a download that may not start any more."""
        if self.cancel.is_set():
            raise FetchError("download skipped: the daemon cut this sync short (configuration "
                             "reload or a local override change)", where=where,
                             reason="sync-interrupted",
                             hint=f"retried at once by the daemon; {_KEEP}")
        if self.remaining() <= 0:
            raise FetchError(
                f"download skipped: the sync ran out of its sync_timeout ({self.seconds:.0f} s)",
                where=where, reason="sync-timeout",
                hint=f"{_KEEP}; the feed is tried again at the next sync. If the feed servers "
                "are this slow, raise sync_timeout in the configuration")

    def take(self, feed: FeedConfig, size: int, count: int) -> None:
        """Account for one feed's payload bytes and indicators, or refuse them."""
        cfg = self.config
        if size > self.bytes_left:
            raise FormatError(
                f"this feed's {size:,} payload bytes would exceed max_sync_bytes "
                f"({cfg.max_sync_bytes:,}) for the whole sync", where=f"feed {feed.name}",
                reason="sync-too-large",
                hint=f"{_KEEP}; raise max_sync_bytes if the gateway has the memory, or ask the "
                "publisher why the feed grew")
        if count > self.indicators_left:
            raise FormatError(
                f"this feed's {count:,} entries would exceed max_sync_indicators "
                f"({cfg.max_sync_indicators:,}) for the whole sync", where=f"feed {feed.name}",
                reason="sync-too-large",
                hint=f"{_KEEP}; raise max_sync_indicators if the gateway has the memory")
        self.bytes_left -= size
        self.indicators_left -= count


class BudgetFetcher(Fetcher):
    """The sync's fetcher, cut at the sync's deadline: no download starts after it, and none
    runs past it (each request's timeout is clamped to the time left)."""

    def __init__(self, inner: Fetcher, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget

    def get(self, url: str, *, max_size: int, timeout: float, etag: str | None = None,
            last_modified: str | None = None, ca_file: str | None = None) -> Response:
        return self._bounded(url, timeout, lambda t: self.inner.get(
            url, max_size=max_size, timeout=t, etag=etag, last_modified=last_modified,
            ca_file=ca_file))

    def request(self, method: str, url: str, *, headers: Mapping[str, str],
                body: bytes | None = None, max_size: int, timeout: float,
                ca_file: str | None = None) -> Response:
        """API sources (MISP, TAXII): every page under the same deadline."""
        return self._bounded(url, timeout, lambda t: self.inner.request(
            method, url, headers=headers, body=body, max_size=max_size, timeout=t,
            ca_file=ca_file))

    def _bounded(self, url: str, timeout: float, call: Callable[[float], Response]) -> Response:
        self.budget.check_time(url)
        clamped = max(0.1, min(timeout, self.budget.remaining()))
        try:
            return call(clamped)
        except FetchError:
            if clamped < timeout:
                self.budget.check_time(url)  # the sync's deadline, not the feed's timeout
            raise


def guard_lines(rejected: Sequence[GuardReject]) -> list[str]:
    return [f"{g.indicator.value}\t{g.reason}\t{g.detail}\n" for g in rejected]


def _cached(feed: FeedConfig, store: StateStore, verify: bool
            ) -> tuple[CachedFeed | None, source.FeedData | None]:
    """The last good copy, checked before it is used for anything (its ETag included): a copy
    that fails its check is moved aside, so the feed is downloaded whole, unconditionally,
    instead of a 304 keeping a damaged cache for ever. With it, its verified payloads when
    `verify` (the copy used if the feed did not change, the base of a reading by difference
    if it did): verified once per sync."""
    cached = store.load_feed(feed.name)
    if cached is None or not verify:
        return cached, None
    try:
        return cached, sources.load_cached(feed, cached)
    except Exception as exc:
        problem = contained(exc, stage="verifying the cached copy", where=f"feed {feed.name}",
                            keep="it is downloaded again")
        store.set_aside_feed(feed.name, f"the cached copy failed its check: {problem.what}")
        return None, None


class Cache(NamedTuple):
    """Where validated results are kept (agent.feedcache), under which guard inputs (None:
    not cached), and whether a result computed now is kept (never in a dry run)."""

    store: StateStore
    policy_print: str | None
    save: bool


def _accepted(feed: FeedConfig, data: source.FeedData, policy: Policy, budget: Budget,
              clock: Clock, with_index: bool, cache: Cache,
              previous: source.FeedData | None = None) -> feedcache.Validated:
    """The validated result of `data`: the cached one when its payloads and settings are those
    of a result kept before (agent.feedcache), else parsed and guarded now (by difference
    from the `previous` copy's result, when that is kept)."""
    budget.take(feed, sum(len(body) for _, _, body in data.payloads), 0)
    started = time.perf_counter()
    try:
        valid = feedcache.validated(
            feed, data, policy.for_feed(feed.min_prefix_v4, feed.min_prefix_v6), cache.store,
            policy_print=cache.policy_print, lines=with_index, save=cache.save,
            previous=previous)
    finally:
        clock.add("parse", started)
    budget.take(feed, 0, valid.digest.summary.parsed)
    return valid


def process_feed(
    feed: FeedConfig, fetcher: Fetcher, store: StateStore, policy: Policy, now: datetime,
    budget: Budget, clock: Clock, *, with_index: bool, refresh: bool = True,
    policy_print: str | None = None,
) -> FeedOutcome:
    """One feed's contribution: downloaded and verified if `refresh`, else its last good copy.
    Never raises: whatever goes wrong is this feed's refusal."""
    where = f"feed {feed.name}"
    cache = Cache(store, policy_print, save=with_index)  # with_index: not a dry run
    try:
        cached, verified = _cached(feed, store, verify=refresh)
    except Exception as exc:
        return FeedOutcome(feed.name, "failed", None, refreshed=refresh, error=contained(
            exc, stage="reading the cached copy", where=where, keep="it is downloaded again"))
    if not refresh and cached is None:
        return FeedOutcome(feed.name, "failed", None, refreshed=False, error=FetchError(
            f"feed {feed.name!r} has no good copy yet and is not due for download",
            reason="pending", hint="the daemon retries it by itself; see `blocklist-agent status`"))
    error: AgentError | None = None
    data: source.FeedData | None = None
    result: feedcache.Validated | None = None
    if refresh:
        started = time.perf_counter()
        try:
            data = sources.fetch(feed, fetcher, cached, now, verified)
        except Exception as exc:
            error = contained(exc, stage="fetching and verifying", where=where, keep=_KEEP)
        clock.add("fetch_verify", started)
    status = "updated" if data is not None and data.fresh else "unchanged"
    if data is not None and data.fresh:
        try:
            result = _accepted(feed, data, policy, budget, clock, with_index, cache, verified)
        except Exception as exc:
            error, data = contained(exc, stage="parsing", where=where, keep=_KEEP), None
    record = data.record if data is not None else (cached.record if cached else None)
    if result is None:
        if error is not None:
            status = "kept" if cached else "failed"
            log.error("feed %s refused: %s", feed.name, error)
        if cached is None:
            return FeedOutcome(feed.name, "failed", None, error=error)
        try:
            result = _accepted(feed, verified or sources.load_cached(feed, cached), policy,
                               budget, clock, False, cache)
        except Exception as exc:
            problem = contained(exc, stage="parsing the cached copy", where=where,
                                keep="nothing of this feed is enforced until it is fetched again")
            log.error("feed %s: the last good copy is unusable: %s", feed.name, problem)
            return FeedOutcome(feed.name, "failed", cached.record, error=error or problem,
                               refreshed=refresh)
    summary = result.digest.summary
    fresh = data is not None and data.fresh
    return FeedOutcome(
        name=feed.name, status=status, record=record, parsed=summary.parsed,
        parse_rejects=summary.parse_rejects, reject_samples=summary.reject_samples,
        guard=GuardResult((), result.rejected if result.parsed_now and fresh
                          else summary.guard_samples),
        error=error, stale=record is not None and source.expired(record, now, feed),
        data=data, index=result.index_lines, refreshed=refresh, digest=result.digest,
    )
