"""Enforcement backends: pure renderers (text for `nft -f`, RPZ zone data) and their appliers.

Renderers never trust their input: every value is re-checked against the character classes of
`agent.indicators` before it is written, so no name or address can inject a line into an nft
script or a zone file, whatever path it took to get here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent.errors import AgentError

_SAFE = {
    "name": re.compile(r"[a-z0-9_.\-\n]*"),
    "address": re.compile(r"[0-9a-f.:/\n]*"),
}
_LABEL_TOO_LONG = re.compile(r"[^.\n]{64}")


def checked(values: Iterable[str], kind: str) -> list[str]:
    """The values as a list, after one C-speed scan proving they only hold safe characters.

    Not sorted: order means nothing to nft or a resolver, and sorting a million values twice
    per sync costs more than the whole check.
    """
    out = list(values)
    blob = "\n".join(out)
    bad = _SAFE[kind].fullmatch(blob) is None or "\n\n" in blob or blob.startswith("\n")
    if kind == "name" and not bad:
        bad = _LABEL_TOO_LONG.search(blob) is not None
    if bad:
        culprit = next(
            (v for v in out if not v or "\n" in v or not _SAFE[kind].fullmatch(v)
             or (kind == "name" and _LABEL_TOO_LONG.search(v))),
            "?",
        )
        raise AgentError(
            f"refusing to render an unsafe {kind}: {culprit[:80]!r}",
            hint="this is a bug in blocklist-agent's validation; please report it with the feed",
            reason="render",
        )
    return out
