"""How the agent writes a moment in time: one spelling for files and JSON, one for people."""

from __future__ import annotations

import time
from datetime import UTC, datetime

Moment = int | float | datetime


def _epoch(when: Moment) -> float:
    return when.timestamp() if isinstance(when, datetime) else float(when)


def iso_z(when: Moment) -> str:
    """`2026-12-01T10:03:41Z`: the spelling in state files, manifests and `--json`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_epoch(when)))


def human_utc(when: Moment | None, missing: str = "-") -> str:
    """`2026-12-01 10:03:41 UTC`: the spelling shown to an operator."""
    if when is None:
        return missing
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(_epoch(when)))


def utc_now() -> datetime:
    return datetime.now(UTC)
