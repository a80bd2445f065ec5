"""The refresh policy of the daemon (agent/daemon/schedule.py), driven by a fake clock."""

from __future__ import annotations

import pytest

from agent.daemon import schedule as s


def test_jitter_is_at_most_a_tenth_of_the_interval_and_capped() -> None:
    assert s.jitter(900, 0.0) == 0
    assert s.jitter(900, 0.999) == pytest.approx(89.91)
    assert s.jitter(7 * 86400, 0.999) <= s.JITTER_MAX  # a weekly feed does not wander by hours


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    delays = [s.backoff(n, cap=900, rand=0.0) for n in range(1, 8)]
    assert delays == [30, 60, 120, 240, 480, 900, 900]
    assert s.backoff(1000, cap=900, rand=0.0) == 900  # no overflow after months of failures
    assert 30 < s.backoff(1, cap=900, rand=0.5) <= 33
    with pytest.raises(ValueError):
        s.backoff(0, cap=900, rand=0.0)


def test_initial_schedule_refreshes_everything_now() -> None:
    sch = s.initial([("a", 900), ("b", 3600)], now=100)
    assert s.due(sch, 100) == frozenset({"a", "b"})
    assert s.next_wakeup(sch) == 100


def test_success_schedules_the_next_refresh_after_the_interval_plus_jitter() -> None:
    sch = s.initial([("a", 900), ("b", 3600)], now=0)
    sch = s.after_sync(sch, {"a": True, "b": True}, apply_failed=False, now=10, rand=0.5)
    assert sch.feeds["a"].due == 10 + 900 + 45
    assert sch.feeds["b"].due == 10 + 3600 + 180
    assert sch.resync is None
    assert s.due(sch, 954) is None  # nothing due before a's time
    assert s.due(sch, 955) == frozenset({"a"})  # b is far: it is not dragged along
    assert s.next_wakeup(sch) == 955


def test_each_feed_keeps_its_own_interval() -> None:
    sch = s.initial([("fast", 60), ("slow", 3600)], now=0)
    sch = s.after_sync(sch, {"fast": True, "slow": True}, apply_failed=False, now=0, rand=0.0)
    refreshed = []
    now = 0.0
    while now < 3600:
        now = s.next_wakeup(sch) or 0.0
        names = s.due(sch, now) or frozenset()
        refreshed.append((now, sorted(names)))
        sch = s.after_sync(sch, dict.fromkeys(names, True), apply_failed=False, now=now,
                           rand=0.0)
    assert sum("fast" in names for _, names in refreshed) == 60
    assert [t for t, names in refreshed if "slow" in names] == [3600]


def test_feeds_due_close_together_are_refreshed_in_one_sync() -> None:
    sch = s.Schedule({"a": s.FeedTimer(900, 100), "b": s.FeedTimer(900, 100 + s.COALESCE),
                      "c": s.FeedTimer(900, 100 + s.COALESCE + 1)})
    assert s.due(sch, 100) == frozenset({"a", "b"})


def test_failure_backs_off_exponentially_then_success_restores_the_interval() -> None:
    sch = s.initial([("a", 900)], now=0)
    now = 0.0
    waits = []
    for _ in range(7):
        sch = s.after_sync(sch, {"a": False}, apply_failed=False, now=now, rand=0.0)
        waits.append(sch.feeds["a"].due - now)
        now = sch.feeds["a"].due
    assert waits == [30, 60, 120, 240, 480, 900, 900]
    assert sch.feeds["a"].failures == 7
    sch = s.after_sync(sch, {"a": True}, apply_failed=False, now=now, rand=0.0)
    assert sch.feeds["a"] == s.FeedTimer(900, now + 900, 0)


def test_a_failed_apply_retries_the_sync_even_with_no_feed_due() -> None:
    sch = s.initial([("a", 900)], now=0)
    sch = s.after_sync(sch, {"a": True}, apply_failed=True, now=0, rand=0.0)
    # nothing was recorded: the feed must be downloaded again, soon
    assert sch.feeds["a"].failures == 1 and sch.feeds["a"].due == 30
    assert sch.resync == 30 and sch.apply_failures == 1
    sch = s.after_sync(sch, {}, apply_failed=True, now=30, rand=0.0)
    assert sch.resync == 90 and sch.apply_failures == 2
    assert s.due(s.Schedule({}, resync=90, apply_failures=2), 90) == frozenset()
    sch = s.after_sync(sch, {"a": True}, apply_failed=False, now=90, rand=0.0)
    assert sch.resync is None and sch.apply_failures == 0


def test_start_up_sync_without_feeds_is_due_once() -> None:
    sch = s.initial([], now=5)
    assert s.due(sch, 5) == frozenset()  # sync (enforce the last good state), download nothing
    sch = s.after_sync(sch, {}, apply_failed=False, now=5, rand=0.0)
    assert s.due(sch, 10**9) is None
    assert s.next_wakeup(sch) is None


def test_a_local_change_syncs_now_and_retries_failed_feeds_only() -> None:
    sch = s.Schedule({"ok": s.FeedTimer(900, 500), "bad": s.FeedTimer(900, 400, failures=3)})
    sch = s.retry_now(sch, 100)
    assert s.due(sch, 100) == frozenset({"bad"})
    assert sch.feeds["ok"].due == 500 and sch.resync == 100


def test_busy_state_lock_postpones_the_sync_a_little() -> None:
    sch = s.Schedule({"a": s.FeedTimer(900, 100)})
    sch = s.busy(sch, 100, 5)
    assert sch.resync == 105
    assert s.busy(s.Schedule({}, resync=101), 100, 5).resync == 101


def test_a_feed_removed_from_the_configuration_is_ignored() -> None:
    sch = s.Schedule({"a": s.FeedTimer(60, 0)})
    sch = s.after_sync(sch, {"a": True, "gone": False}, apply_failed=False, now=0, rand=0.0)
    assert set(sch.feeds) == frozenset({"a"})
