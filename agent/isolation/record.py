"""The kill switch's record, `isolation.json` in the state directory, and its clock.

Read by every command that renders the table (a reload must never lift or lose isolation), so a
record that cannot be read counts as "not isolated" instead of stopping the kill switch.
"""

from __future__ import annotations

import time

from agent.isolation.model import IsolationState
from agent.state import StateStore


def load(store: StateStore) -> IsolationState:
    return IsolationState.from_json(store.load_isolation())  # {} (not isolated) if unreadable


def save(store: StateStore, state: IsolationState) -> None:
    store.save_isolation(state.to_json())


def now() -> int:
    """Whole seconds: the unit of the record's times and of nft element timeouts."""
    return int(time.time())
