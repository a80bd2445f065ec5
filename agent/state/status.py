"""status.json: what `status`, the metrics textfile and an operator read about the last sync.

Built from the sync's own `--json` document (pipeline.SyncResult.to_dict()) and the previous
status.json, so the file has one writer and one shape whoever ran the sync. A feed the sync did
not refresh (the daemon refreshes each feed on its own schedule; the others come from their
last good copy) keeps the record of its last *real* attempt: otherwise a feed in backoff would
look healthy between two attempts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

ATTEMPT_KEYS = ("status", "error", "failures", "last_attempt", "last_success")
NEVER_TRIED = {"status": "unchanged", "failures": 0}  # attempt keys of a feed not tried yet


def after_sync(
    previous: Mapping[str, Any],
    sync: Mapping[str, Any],
    *,
    enforced: Mapping[str, int],
    stamp: str,
    refreshed: Collection[str] | None,
) -> dict[str, Any]:
    """The new status.json; `refreshed` None means every feed was refreshed (`sync`)."""
    old_feeds = previous.get("feeds") or {}
    feeds: dict[str, Any] = {}
    guard_totals: Counter[str] = Counter()
    for entry in sync["feeds"]:
        name = entry["name"]
        guard_totals.update(entry["guard_rejects"])
        old = old_feeds.get(name)
        if refreshed is None or name in refreshed:
            old = old or {}
            ok = entry["error"] is None
            feeds[name] = {
                **entry, "last_attempt": stamp,
                "last_success": stamp if ok and sync["applied"] else old.get("last_success"),
                "failures": 0 if ok else int(old.get("failures", 0)) + 1,
            }
        elif old is None and entry["error"] is not None:
            continue  # never attempted: `status` says "never synced"
        else:
            base = old or NEVER_TRIED
            feeds[name] = {**entry, **{k: base.get(k) for k in ATTEMPT_KEYS}}
    status = {
        "last_sync": {
            "time": stamp, "result": sync["result"], "applied": sync["applied"],
            "error": sync["error"], "plan": sync["plan"],
            "deescalated": sync.get("deescalated"),
            "duration": sync["timings"].get("total", 0.0),
        },
        "feeds": feeds,
        "guard_rejects": dict(guard_totals),
        "enforced": dict(enforced),
        "overrides": sync["overrides"],
    }
    for key, value in previous.items():  # keep what other commands recorded (isolation, ...)
        status.setdefault(key, value)
    return status
