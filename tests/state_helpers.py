"""What tests read of the state directory the way the agent reads it: applied.json holds a
base and the difference from it (agent/state/applied.py), so its sets are not inline."""

from __future__ import annotations

from pathlib import Path

from agent.state import StateStore


def applied_sets(state_dir: Path) -> dict[str, list[str]]:
    """The applied blocklist's sets as sorted lists; {} when nothing was applied."""
    found = StateStore(state_dir).load_applied()
    return found[0].to_json() if found is not None else {}
