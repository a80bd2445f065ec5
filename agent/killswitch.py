"""The kill switch's apply edge: make the kernel match an isolation state, and record it.

Used by `isolate`/`restore`, by `status` and by the daemon (which notices a `--for` deadline
that passed, records it, and re-checks the kernel: after a reboot, `enforced.nft` carried the
isolation with the timeout it had when written).
"""

from __future__ import annotations

from agent import isolation
from agent.backends.nft_exec import Nft
from agent.backends.nft_isolation import render_break_glass, render_isolation_script
from agent.backends.nft_render import render_table
from agent.config import Config
from agent.isolation import IsolationState
from agent.merge import Blocklist
from agent.state import StateStore


def enforce(config: Config, store: StateStore, state: IsolationState, now: int,
            nft: Nft | None = None) -> None:
    """Make the kernel match `state`, then record it and refresh the boot-path files."""
    fw = config.firewall
    runner = nft or Nft()
    runner.load(render_isolation_script(fw, state, now))
    isolation.save(store, state)
    write_boot_files(config, store, state, now)


def write_boot_files(config: Config, store: StateStore, state: IsolationState, now: int) -> None:
    """enforced.nft (the whole table, isolation included) and break-glass.nft."""
    fw = config.firewall
    applied = store.load_applied()
    if store.has_nft_record() and applied is not None:
        store.save_boot_ruleset(render_table(fw, applied[0], state, now))
    else:
        store.save_boot_ruleset(render_table(fw, Blocklist(), state, now))
        # the kernel table (if any) does not hold the blocklist: the next sync reloads it whole
        store.forget_nft_record()
    store.save_break_glass(render_break_glass(fw, state, now))



def reconcile(config: Config, store: StateStore, now: int, nft: Nft | None = None
              ) -> IsolationState:
    """Apply deadlines that passed: record the lift once, and bring the kernel in line."""
    stored = isolation.load(store)
    live = stored.live(now)
    if live != stored:
        if config.firewall.backend == "nftables":
            enforce(config, store, live, now, nft)
        else:
            isolation.save(store, live)
        store.append_history({"event": "restore", "by": "deadline",
                              "reason": "the --for deadline passed"})
    return live
