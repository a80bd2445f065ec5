"""The nftables backend: the merged blocklist into the agent's own table, atomically.

This first version replaces the whole table in one `nft -f` transaction on every change (the
table is owned by the agent; nothing else is touched) and keeps `enforced.nft` in the state
directory: the complete table as last applied, loadable with plain `nft -f` at boot.
"""

from __future__ import annotations

from agent.backends.base import ApplyContext, Backend
from agent.backends.nft_exec import Nft
from agent.backends.nft_render import render_table
from agent.merge import Blocklist
from agent.plan import Plan

ENFORCED = "enforced.nft"


class NftablesBackend(Backend):
    name = "nftables"

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or Nft()

    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> None:
        script = render_table(ctx.config.firewall, blocklist)
        self.nft.load(script)
        ctx.store.write_file(ENFORCED, script.encode())
