"""Nothing changed costs nothing: a sync whose inputs are those of the last applied sync, on
enforcement points that still hold what it applied, applies nothing (docs/design.md §1).

The inputs are everything the merged blocklist is a function of: the configuration, each
feed's validated result (its digest key: payloads, feed settings, the guards' inputs and the
agent's code, agent.feedcache), the local overrides in force now. applied.json records them;
when they are equal and every backend says it holds the recorded generation (the kernel's
table, the resolver's zone), merge, plan, apply and the rewrite of the record are skipped: the
sync costs its conditional downloads and the re-verification of the cached copies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from agent.backends.base import ApplyContext, Backend
from agent.config import Config
from agent.feedcache import stable
from agent.merge import Blocklist
from agent.overrides import Overrides
from agent.plan import Plan, SetChange


def inputs(config: Config, feeds: Sequence[tuple[str, str | None]], local: Overrides,
           policy_print: str | None) -> str | None:
    """The fingerprint of a sync's inputs; `feeds` are (name, digest key or None when the feed
    contributes nothing). None when some input has no stable form."""
    if policy_print is None or any(key == "" for _, key in feeds):
        return None
    try:
        text = "\n".join([stable(config), stable(list(feeds)), stable(local.allow),
                          stable(local.deny), policy_print])
    except TypeError:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def unchanged(previous: tuple[Blocklist, Mapping[str, Any]] | None, fingerprint: str | None,
              backends: Sequence[Backend], ctx: ApplyContext) -> list[str] | None:
    """The backends' notes when this sync can apply nothing at all, else None."""
    if fingerprint is None or previous is None or previous[1].get("inputs") != fingerprint:
        return None
    notes = []
    for backend in backends:
        note = backend.unchanged(ctx)
        if note is None:
            return None
        notes.append(note)
    return notes


def empty_plan(blocklist: Blocklist, *, max_change: float, force: bool) -> Plan:
    """The plan of a sync that changes nothing, from the record's counts alone."""
    total = blocklist.total
    changes = {name: SetChange(frozenset(), frozenset(), n, n)
               for name, n in blocklist.counts().items()}
    return Plan(changes=changes, first=False, before=total, after=total, added=0, removed=0,
                max_change=max_change, forced=force)
