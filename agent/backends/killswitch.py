"""The kill switch's apply edge: make the kernel match an isolation state, through the one writer.

Used by `isolate`/`restore` and by the daemon. Nothing here lifts or re-imposes an isolation
from the wall clock: a `--for` deadline is an element timeout that the kernel honours by itself;
`reconcile` only records, once, a lift the kernel already made. Read-only commands (status,
why) call `observe`, which changes neither the kernel nor the record.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelIsolation, KernelView
from agent.backends.nft_writer import TableWriter
from agent.config import Config
from agent.errors import AgentError
from agent.isolation import record
from agent.isolation.model import IsolationState
from agent.isolation.status import describe
from agent.state import StateStore


def enforce(config: Config, store: StateStore, state: IsolationState, now: int,
            nft: Nft | None = None) -> KernelIsolation:
    """Commit `state`, read the kernel back, record it and refresh the boot-path files."""
    return TableWriter(config, store, nft).set_isolation(state, now)


def observe(config: Config, store: StateStore, nft: Nft | None = None
            ) -> KernelIsolation | None:
    """The isolation the kernel enforces now; None when it cannot be read (not root...)."""
    if config.firewall.backend != "nftables":
        return None
    try:
        return KernelView(nft or Nft(), config.firewall.table).isolation()
    except AgentError:
        return None


def reconcile(config: Config, store: StateStore, now: int, nft: Nft | None = None
              ) -> IsolationState:
    """Record a lift the kernel made (the `--for` timeout ran out): once, without touching the
    kernel. A recorded isolation the kernel does not hold although its deadline is ahead is
    NOT lifted here: that is a disagreement, shown by status and repaired by the daemon."""
    stored = record.load(store)
    kernel = observe(config, store, nft)
    lifted = stored.active and stored.deadline is not None and stored.deadline <= now
    if kernel is not None and kernel.table_present:
        lifted = stored.active and not kernel.wan and stored.deadline is not None and (
            stored.deadline <= now + 1)
    live = replace(stored, active=False) if lifted else stored
    peers = tuple(p for p in live.peers if p.deadline is None or p.deadline > now)
    live = replace(live, peers=peers)
    if live != stored:
        record.save(store, live)
        store.append_history({"event": "restore", "by": "deadline",
                              "reason": "the --for deadline passed"})
    return live


def isolation_status(config: Config, store: StateStore, now: int) -> dict[str, Any]:
    """For `status`: the record and what the kernel enforces; never changes the kernel (a lift
    the kernel made is recorded, once)."""
    try:
        state = reconcile(config, store, now)
    except AgentError:  # the state directory is read-only for this user: show the record
        state = record.load(store)
    doc = describe(config, state.live(now), now)
    kernel = observe(config, store)
    if kernel is not None:
        doc["kernel"] = {"table_present": kernel.table_present, "wan": kernel.wan,
                         "peers": kernel.peers, "allow": list(kernel.allow)}
        doc["active"] = kernel.active
        if kernel.active and not state.active:
            doc.update(since=None, by="break-glass", reason="break-glass.nft or a manual change",
                       deadline=None)
    return doc
