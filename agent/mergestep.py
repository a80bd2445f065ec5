"""Merge and plan of one sync: by difference from the record when that is exact, else whole.

docs/design.md §15: when only single addresses and exact names of some feeds changed,
agent.merge_delta makes the new blocklist and its plan from the applied record at the cost of
the change; otherwise every feed's result is merged (agent.digest.merged) and planned against
the record (agent.plan). Either way a plan held for the share of address space names who weighs
most, and the blocklist comes out as the record's base plus a difference (agent.ledger), so
that it is applied and recorded at the cost of the change too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agent import ledger, merge_delta
from agent.config import Config
from agent.coverage import contributors
from agent.digest import merged
from agent.feedstep import Clock, FeedOutcome
from agent.indicators import Indicator
from agent.merge import Blocklist
from agent.plan import Plan, make_plan
from agent.state import StateStore


def merge_and_plan(config: Config, previous: tuple[Blocklist, dict[str, Any]] | None,
                   blocking: Sequence[FeedOutcome], deny: Sequence[Indicator],
                   allow: Sequence[Indicator], merged_print: str, store: StateStore,
                   force: bool, clock: Clock) -> tuple[Blocklist, Plan, Blocklist | None]:
    """(blocklist, plan, baseline): by difference from the record when only some feeds'
    single values moved (agent.merge_delta), else the full merge and plan."""
    guards = config.guards
    step = merge_delta.by_difference(
        previous, {o.name: o.digest for o in blocking}, store, deny=deny, allow=allow,
        merged_print=merged_print, max_change=guards.max_change, force=force,
        max_address_share=guards.max_address_share)
    if step is not None:  # only what the changed feeds moved
        plan = named(step.plan, blocking, deny, guards.max_address_share, force)
        return step.blocklist, plan, previous[0] if previous else None
    started = time.perf_counter()
    blocklist = merged([o.digest for o in blocking if o.digest is not None],
                       [*(o.indicators for o in blocking if o.digest is None), deny],
                       allow=allow)
    clock.add("merge", started)
    # An empty enforcement (every feed failed on the first attempts) protects nothing: the first
    # real data is a first sync, not a 100 % change held for --force.
    baseline = previous[0] if previous and (previous[0].total or not blocklist.total) else None
    plan = make_plan(baseline, blocklist, max_change=guards.max_change, force=force,
                     max_address_share=guards.max_address_share)
    plan = named(plan, blocking, deny, guards.max_address_share, force)
    return ledger.following(baseline, plan, blocklist), plan, baseline


def named(plan: Plan, blocking: Sequence[FeedOutcome], deny: Sequence[Indicator],
          limit: float, force: bool) -> Plan:
    """A plan held for the address share names the feeds and prefixes that weigh most."""
    if not plan.share_over or force:
        return plan
    named = [*((o.name, o.all_indicators()) for o in blocking), ("local deny", deny)]
    return plan._replace(contributors=tuple(contributors(named, plan.share, limit)))
