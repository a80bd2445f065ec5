"""The kill switch's apply edge: make the kernel match an isolation state, through the one writer.

Used by `isolate`/`restore` and by the daemon, which records a `--for` deadline once the kernel
honoured it (its element timeout) and, after a reboot, re-bases the record on the new boot's
clock from the time the kernel says is left. `status` only reads (`isolation_status`): a
read-only command never changes the kernel nor the record, and no deadline is ever decided by
the wall clock. The state itself, its record and what is shown of it are agent.isolation's.
"""

from __future__ import annotations

from typing import Any

from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelIsolation, KernelView
from agent.backends.nft_writer import TableWriter
from agent.config import Config
from agent.errors import AgentError
from agent.isolation import intent, record
from agent.isolation.clock import read_clock
from agent.isolation.model import IsolationState
from agent.isolation.status import describe
from agent.state import StateStore


def read_kernel(config: Config, nft: Nft | None = None) -> KernelIsolation | None:
    """The isolation sets as the kernel holds them; None when it cannot be read (not root,
    no nft)."""
    try:
        return KernelView(nft or Nft(timeout=30), config.firewall.table).isolation()
    except (AgentError, ValueError):
        return None


def enforce(config: Config, store: StateStore, state: IsolationState, now: int,
            nft: Nft | None = None) -> KernelIsolation:
    """Commit `state`, read the kernel back, record it and refresh the boot-path files."""
    return TableWriter(config, store, nft).set_isolation(state, now)


def reconcile(config: Config, store: StateStore, now: int, nft: Nft | None = None
              ) -> IsolationState:
    """For the daemon, each loop (at least once a minute): record once a deadline the kernel
    honoured (history `by: deadline`), re-base a record made in another boot on this boot's
    clock, and rewrite the boot file with the time left while a deadline runs. Changes nothing
    in the kernel; judged and recorded under the kernel lock, so a concurrent `isolate` wins."""
    recorded = record.load(store)
    if config.firewall.backend != "nftables" or not (recorded.active or recorded.peers):
        return recorded
    with store.kernel_lock():
        recorded = record.load(store)
        kernel = read_kernel(config, nft)
        if kernel is None or not kernel.table_present:
            return recorded  # nothing known: never lift on the record's word alone
        clock = read_clock()
        verdict = intent.current(config, store, kernel, clock)
        changed = bool(verdict.lifted or verdict.lifted_peers)
        if changed or (recorded.boot_id != clock.boot_id and not verdict.adopted):
            record.save(store, verdict.state)  # (a re-based record: time left on this boot)
        for name in verdict.lifted_peers:  # (the isolation's own line: record.save)
            store.append_history({"event": "restore", "by": "deadline", "peers": [name],
                                  "reason": "the --for deadline passed (the kernel lifted it)"})
    state = verdict.state
    timed = state.deadline is not None or any(p.deadline is not None for p in state.peers)
    if changed or timed:
        # isolation.nft (which enforced.nft includes) with the time left now: after a reboot
        # the rest applies, not the whole length; and nothing the kernel lifted comes back
        TableWriter(config, store, nft).refresh_isolation_boot(now)
    return state


def isolation_status(config: Config, store: StateStore, now: int) -> dict[str, Any]:
    """For `status`: what the kernel holds, with the record's who and why. Read-only."""
    kernel = read_kernel(config)
    return describe(config, intent.current(config, store, kernel), now, kernel)
