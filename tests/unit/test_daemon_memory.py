"""The daemon keeps counts between syncs, not values (agent/daemon/memory.py)."""

from __future__ import annotations

import pytest

from agent import overrides
from agent.daemon.memory import release, slim
from agent.digest import from_checked
from agent.feedstep import FeedOutcome
from agent.guards import GuardResult
from agent.indicators import DOMAIN, IPV4, Indicator
from agent.merge import merge
from agent.pipeline import SyncResult
from agent.plan import make_plan


def _result() -> SyncResult:
    inds = [Indicator(IPV4, f"198.51.100.{i}") for i in range(50)] + [
        Indicator(IPV4, "203.0.113.0/24"), Indicator(DOMAIN, "evil.example")]
    digest = from_checked("k" * 64, len(inds), [], GuardResult(tuple(inds), ()))
    outcome = FeedOutcome("cert", "updated", None, parsed=len(inds), digest=digest,
                          index=("x\t\tf:1\n",))
    blocklist = merge([inds])
    plan = make_plan(None, blocklist, max_change=0.2)
    return SyncResult([outcome], overrides.Overrides((), (), (), ()), blocklist, plan, applied=True)


def test_a_slim_result_reports_the_same_and_holds_no_values() -> None:
    full = _result()
    kept = slim(full)
    before, after = full.to_dict(), kept.to_dict()
    for key in ("result", "applied", "feeds", "enforced"):
        assert after.get(key) == before.get(key), key
    assert kept.blocklist.total == full.blocklist.total == 52
    assert kept.plan.added == full.plan.added and kept.plan.held == full.plan.held
    assert all(not c.added and not c.removed for c in kept.plan.changes.values())
    digest = kept.feeds[0].digest
    assert digest is not None and digest.values("v4") == () and kept.feeds[0].index == ()
    with pytest.raises(RuntimeError, match="not kept"):
        _ = kept.blocklist.v4
    release()  # gives memory back; must not fail where glibc is present
