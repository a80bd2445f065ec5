"""The kill switch's apply edge: make the kernel match an isolation state, and record it.

Used by `isolate`/`restore`, by `status` and by the daemon (which notices a `--for` deadline
that passed, records it, and re-checks the kernel: after a reboot, `enforced.nft` carried the
isolation with the timeout it had when written). The state itself, its record and what is shown
of it are agent.isolation's; this is the part that talks to nft, beside the nftables backend.
"""

from __future__ import annotations

from typing import Any

from agent.backends.nft_exec import Nft
from agent.backends.nftables import NftablesBackend
from agent.config import Config
from agent.errors import AgentError
from agent.isolation import record
from agent.isolation.model import IsolationState
from agent.isolation.status import describe
from agent.render.nft_isolation import render_isolation_script
from agent.state import StateStore


def enforce(config: Config, store: StateStore, state: IsolationState, now: int,
            nft: Nft | None = None) -> None:
    """Make the kernel match `state`, then record it and refresh the boot-path files."""
    fw = config.firewall
    runner = nft or Nft()
    runner.load(render_isolation_script(fw, state, now))
    record.save(store, state)
    NftablesBackend.write_boot_files(store, fw, state, now)


def reconcile(config: Config, store: StateStore, now: int, nft: Nft | None = None
              ) -> IsolationState:
    """Apply deadlines that passed: record the lift once, and bring the kernel in line."""
    stored = record.load(store)
    live = stored.live(now)
    if live != stored:
        if config.firewall.backend == "nftables":
            enforce(config, store, live, now, nft)
        else:
            record.save(store, live)
        store.append_history({"event": "restore", "by": "deadline",
                              "reason": "the --for deadline passed"})
    return live


def isolation_status(config: Config, store: StateStore, now: int) -> dict[str, Any]:
    """For `status`: the recorded state, with deadlines that passed applied and recorded."""
    try:
        state = reconcile(config, store, now)
    except AgentError:  # not root, or nft missing: show the record as it is
        state = record.load(store).live(now)
    return describe(config, state, now)
