"""Unit tests ask no DNS server: the sync's lifeline and protected-name lookups (agent/lifelines.py)
answer nothing here, as when DNS is down, so no test depends on the machine's resolver."""

from __future__ import annotations

from collections.abc import Iterable

import pytest


@pytest.fixture(autouse=True)
def _no_lifeline_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    def unanswered(names: Iterable[str], deadline: float) -> dict[str, list[str] | None]:
        return {}

    monkeypatch.setattr("agent.lifelines.resolve_all", unanswered)
