"""What the daemon keeps between two syncs, and giving back what a sync used.

A sync of a million entries builds sets, digests and payload copies worth a few hundred MiB;
the daemon then sleeps for an hour on a gateway that may have 1 GB. So the result kept for
STATUS= and the metrics is cut down to its counts (`slim`), and after each sync the memory is
handed back to the system (`release`): a collection, then glibc's malloc_trim, which returns the
freed heap pages that CPython's allocator alone would keep mapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agent.coverage import nets_public
from agent.digest import Digest
from agent.ledger import Delta, LazyBlocklist
from agent.merge import Blocklist
from agent.netrange import forget_spans
from agent.plan import Plan, SetChange

if TYPE_CHECKING:
    from agent.pipeline import SyncResult

log = logging.getLogger(__name__)
_NONE: frozenset[str] = frozenset()


def _gone() -> dict[str, str]:
    raise RuntimeError("the sets of a past sync are not kept: read the applied record")


def counted(blocklist: Blocklist) -> Blocklist:
    """A blocklist that knows its counts only (what the daemon reports between syncs)."""
    return LazyBlocklist(_gone, Delta.empty(), blocklist.counts())


def _plan(plan: Plan) -> Plan:
    return plan._replace(changes={name: SetChange(_NONE, _NONE, c.before, c.after)
                                  for name, c in plan.changes.items()})


def slim(result: SyncResult) -> SyncResult:
    """`result` without its values: the counts, outcomes and errors stay."""
    feeds = [replace(o, indicators=(), data=None, index=(),
                     digest=None if o.digest is None else Digest(o.digest.summary, {}))
             for o in result.feeds]
    return replace(result, feeds=feeds, blocklist=counted(result.blocklist),
                   plan=_plan(result.plan),
                   deescalated=None if result.deescalated is None else _plan(result.deescalated))


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release() -> None:
    """Collect, then give the freed heap back to the system (glibc; elsewhere a no-op). The
    per-sync caches go first: a few live objects left among a sync's millions of freed ones
    keep whole allocator arenas mapped."""
    forget_spans()
    nets_public.cache_clear()
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        try:
            trim(0)
        except (OSError, ctypes.ArgumentError) as exc:  # pragma: no cover - glibc only
            log.debug("malloc_trim: %s", exc)
