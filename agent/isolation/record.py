"""The kill switch's record, `isolation.json` in the state directory, and its clock.

Read by every command that renders the table (a reload must never lift or lose isolation), so a
record that cannot be read counts as "not isolated" instead of stopping the kill switch.
"""

from __future__ import annotations

import time

from agent.isolation.model import DEADLINE, IsolationState
from agent.state import StateStore


def load(store: StateStore) -> IsolationState:
    return IsolationState.from_json(store.load_isolation())  # {} (not isolated) if unreadable


def save(store: StateStore, state: IsolationState) -> None:
    """Record `state`; the first record of a lift the kernel made by its deadline (whoever
    writes it: the daemon, a sync's reload, an isolate) leaves its line in the history."""
    if state.ended_by == DEADLINE and load(store).active:
        note_lift(store)
    store.save_isolation(state.to_json())


def note_lift(store: StateStore) -> None:
    """The history line of an isolation the kernel lifted by its `--for` deadline."""
    store.append_history({"event": "restore", "by": DEADLINE, "peers": None,
                          "reason": "the --for deadline passed (the kernel lifted it)"})


def now() -> int:
    """Whole seconds: the unit of the record's times and of nft element timeouts."""
    return int(time.time())
