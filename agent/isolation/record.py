"""The kill switch's record, `isolation.json` in the state directory, and its clock.

Read by every command that renders the table (a reload must never lift or lose isolation), so a
record that cannot be read counts as "not isolated" instead of stopping the kill switch.
"""

from __future__ import annotations

import time

from agent.isolation.model import DEADLINE, IsolationState
from agent.state import StateStore
from agent.state.store import ISOLATION


def load(store: StateStore) -> IsolationState:
    """The recorded intent; a record of the wrong shape (`[]`, a peer without a field) is moved
    aside and reads as "not isolated": the kill switch must work whatever the file holds (the
    kernel's own isolation sets are still honoured by the writer)."""
    data = store.load_isolation()  # {} (not isolated) if missing or not a JSON object
    try:
        state = IsolationState.from_json(data)
        problem = _problem(state)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:80]}"
    if problem is None:
        return state
    store.set_aside(ISOLATION, f"not an isolation record ({problem})")
    return IsolationState()


def _problem(state: IsolationState) -> str | None:
    """What of the record's values cannot be used as typed (the JSON was edited or damaged)."""
    def when(value: object) -> bool:
        return value is None or (isinstance(value, int) and not isinstance(value, bool))

    if not isinstance(state.active, bool) or not when(state.since) or not when(state.deadline):
        return "active, since or deadline of the wrong type"
    texts = [*state.allow, *state.unresolved, state.by, state.reason]
    for peer in state.peers:
        texts += [peer.name, *peer.cidrs, peer.by, peer.reason]
        if not when(peer.deadline) or not when(peer.since):
            return f"peer {peer.name!r}: since or deadline of the wrong type"
    if not all(isinstance(t, str) for t in texts):
        return "a name, address or text that is not a string"
    if not isinstance(state.resolved, dict):
        return "'resolved' must be an object"
    return None


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
