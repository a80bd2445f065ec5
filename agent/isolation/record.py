"""The kill switch's record, `isolation.json` in the state directory, and its clock.

Read by every command that renders the table (a reload must never lift or lose isolation), so a
record that cannot be read counts as "not isolated" instead of stopping the kill switch.
"""

from __future__ import annotations

import json
import time

from agent.isolation.model import IsolationState
from agent.state import StateStore

STATE_FILE = "isolation.json"


def load(store: StateStore) -> IsolationState:
    try:
        data = json.loads((store.root / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return IsolationState()
    except (OSError, ValueError):
        # an unreadable record must not stop the kill switch: start from "not isolated"
        return IsolationState()
    return IsolationState.from_json(data)


def save(store: StateStore, state: IsolationState) -> None:
    store.write_file(STATE_FILE, json.dumps(state.to_json(), indent=1, sort_keys=True).encode())


def now() -> int:
    """Whole seconds: the unit of the record's times and of nft element timeouts."""
    return int(time.time())
