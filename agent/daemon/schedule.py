"""When the daemon refreshes what: next-due times, jitter and backoff, as pure functions.

Kept apart from the loop (agent/daemon/loop.py) so the policy can be tested with a fake clock, and
because its choices matter to the people running the feed servers:

- every feed has its own `refresh` interval, plus a random *jitter* of up to a tenth of it (at
  most JITTER_MAX): a fleet of gateways rebooted by the same power cut must not hit the feed
  server at the same second, every time, for ever;
- a feed whose refresh failed is retried sooner than its interval, with *exponential backoff*
  from BACKOFF_BASE, doubling at each failure, capped at the feed's own interval: a short outage
  is repaired quickly and a long one costs the server no more than normal operation;
- feeds that come due within COALESCE of one another are refreshed in the same sync, since each
  sync re-merges and re-applies everything;
- a sync whose apply failed (kernel or resolver refused) is retried with its own backoff, capped
  at RESYNC_MAX, even when no feed is due: the enforcement must catch up as soon as it can.

Times are seconds on a monotonic clock (time.monotonic), never wall-clock time: an NTP step on
a gateway must not trigger or postpone refreshes. Randomness comes in as numbers in [0, 1), so
tests choose it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from agent.errors import AgentError

JITTER = 0.1  # fraction of the interval added at random
JITTER_MAX = 600.0  # seconds: a 7-day refresh does not wander by 17 hours
BACKOFF_BASE = 30.0  # seconds before the first retry of a failed feed
COALESCE = 30.0  # seconds: feeds due this soon after a due one are refreshed along with it
RESYNC_MAX = 900.0  # seconds: cap of the backoff of a failed apply


@dataclass(frozen=True)
class FeedTimer:
    """One feed's place in the schedule."""

    refresh: float  # its configured interval, seconds
    due: float  # monotonic time of its next refresh
    failures: int = 0  # consecutive failed refreshes


@dataclass(frozen=True)
class Schedule:
    """Every feed's timer, plus a pending sync that is not tied to any feed.

    `resync` is set for a sync that must happen even if no feed is due: the first one (to enforce
    the last good state at start-up), one after a change of the local overrides, a retry after a
    failed apply. `apply_failures` drives the backoff of the last case.
    """

    feeds: Mapping[str, FeedTimer]
    resync: float | None = None
    apply_failures: int = 0


def jitter(interval: float, rand: float) -> float:
    """The extra delay for `interval`, given `rand` in [0, 1)."""
    return min(interval * JITTER, JITTER_MAX) * rand


def backoff(failures: int, cap: float, rand: float) -> float:
    """Delay before retry number `failures` (1 for the first): BACKOFF_BASE * 2^(n-1), capped."""
    if failures < 1:
        raise ValueError("backoff() is for a failed attempt: failures must be at least 1")
    exponent = min(failures - 1, 32)  # 2**32 * 30 s is far past any cap; avoids huge floats
    delay = min(BACKOFF_BASE * 2.0**exponent, cap)
    return delay + jitter(delay, rand)


def initial(feeds: Iterable[tuple[str, float]], now: float) -> Schedule:
    """Start-up or a new configuration: enforce what is cached now, refresh every feed now."""
    return Schedule({name: FeedTimer(refresh, now) for name, refresh in feeds}, resync=now)


def due(schedule: Schedule, now: float) -> frozenset[str] | None:
    """The feeds to refresh in a sync starting `now`, or None if no sync is needed yet.

    An empty set means: sync now (resync is due) without refreshing any feed.
    """
    timers = schedule.feeds
    feed_due = any(t.due <= now for t in timers.values())
    resync_due = schedule.resync is not None and schedule.resync <= now
    if not feed_due and not resync_due:
        return None
    if not feed_due:
        return frozenset()
    return frozenset(name for name, t in timers.items() if t.due <= now + COALESCE)


def after_sync(
    schedule: Schedule,
    refreshed: Mapping[str, bool],
    *,
    apply_failed: bool,
    now: float,
    rand: float,
) -> Schedule:
    """The schedule after a sync that refreshed `refreshed` (feed name -> success).

    With `apply_failed` (the kernel or resolver refused the change) nothing fetched was
    recorded, so the refreshed feeds count as failed: they must be fetched again on retry. A plan
    held by guards.max_change is not a failure: retrying sooner would not release it.
    """
    feeds = dict(schedule.feeds)
    for name, ok in refreshed.items():
        timer = feeds.get(name)
        if timer is None:  # dropped from the configuration meanwhile
            continue
        if ok and not apply_failed:
            feeds[name] = FeedTimer(timer.refresh, now + timer.refresh + jitter(timer.refresh,
                                                                               rand))
        else:
            failures = timer.failures + 1
            feeds[name] = FeedTimer(timer.refresh, now + backoff(failures, timer.refresh, rand),
                                    failures)
    if not apply_failed:
        return Schedule(feeds)
    failures = schedule.apply_failures + 1
    return Schedule(feeds, resync=now + backoff(failures, RESYNC_MAX, rand),
                    apply_failures=failures)


def busy(schedule: Schedule, now: float, delay: float) -> Schedule:
    """Another command holds the state lock: try the same sync again after `delay`."""
    return replace(schedule, resync=now + delay if schedule.resync is None
                   else min(schedule.resync, now + delay))


def retry_now(schedule: Schedule, now: float) -> Schedule:
    """Something changed on disk (local overrides): sync now, and retry failed feeds now.

    Feeds that are fine keep their timers: a new override needs no download.
    """
    feeds = {name: replace(t, due=now) if t.failures else t for name, t in schedule.feeds.items()}
    return replace(schedule, feeds=feeds, resync=now)


def next_wakeup(schedule: Schedule) -> float | None:
    """Monotonic time of the next sync, or None when nothing is scheduled (no feed at all)."""
    times = [t.due for t in schedule.feeds.values()]
    if schedule.resync is not None:
        times.append(schedule.resync)
    return min(times) if times else None


def not_before(schedule: Schedule, name: str, when: float) -> Schedule:
    """A server asked (Retry-After) not to be asked again before `when`: the feed waits at
    least that long, whatever its backoff says."""
    timer = schedule.feeds.get(name)
    if timer is None or timer.due >= when:
        return schedule
    return replace(schedule, feeds={**schedule.feeds, name: replace(timer, due=when)})


def after_errors(schedule: Schedule, refresh: Collection[str],
                 errors: Mapping[str, AgentError | None], *, apply_failed: bool, now: float,
                 rand: float) -> Schedule:
    """`after_sync` from the feeds' errors: a feed whose download the daemon cut short
    (sync-interrupted) is due again at once, not backed off; a server's Retry-After is a
    floor under the feed's next attempt."""
    refreshed = {n: e is None for n, e in errors.items()
                 if n in refresh and not (e is not None and e.reason == "sync-interrupted")}
    schedule = after_sync(schedule, refreshed, apply_failed=apply_failed, now=now, rand=rand)
    for name, error in errors.items():
        wait = getattr(error, "retry_after", None)
        if wait is not None and name in refresh:
            schedule = not_before(schedule, name, now + wait)
    return schedule
