"""The nftables backend: the merged blocklist into the agent's own table, atomically.

Measured on Debian 12's nft 1.0.6 with a million-element set (docs/design.md §6): `nft -f` of a
1 % diff takes 0.15 s and a flush + re-add of 10k prefixes 0.18 s, but listing a big set takes
~30 s because nft fetches every element first; the terse ruleset listing stays at 7 ms. Hence:

- changes go through the one writer (agent.backends.nft_writer): by difference when the kernel
  holds what its record says, a full reload (one transaction) otherwise;
- what `status`, `why` and the metrics say is read from the kernel (agent.backends.nft_view):
  the table and its chains, the isolation sets with their kernel timeouts, single elements by
  a read-only probe; the records only say what the agent meant, and a difference between the
  two is reported as such, first, with a failing exit code.
"""

from __future__ import annotations

from typing import Any

from agent import isolation
from agent.backends.base import ApplyContext, Backend
from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelIsolation, KernelView
from agent.backends.nft_writer import TableWriter, config_hash
from agent.config import Config
from agent.errors import ApplyError
from agent.isolation import record
from agent.isolation.status import disagreement as isolation_disagreement
from agent.merge import Blocklist
from agent.plan import Plan
from agent.state import StateStore


def disagreements(config: Config, store: StateStore, skeleton: str | None,
                  iso: KernelIsolation, now: int) -> list[str]:
    """Where the kernel and the agent's intent differ, in words for the operator."""
    fw = config.firewall
    rec = store.load_nft_record()
    applied = store.load_applied()
    out = []
    if skeleton is None:
        if rec or applied is not None:
            out.append(f"the nftables table inet {fw.table} is MISSING from the kernel: "
                       "nothing is blocked")
    else:
        if rec and rec.get("skeleton") != skeleton:
            out.append(f"the table inet {fw.table} was changed outside the agent")
        if rec.get("pending"):
            out.append("an apply to nftables was interrupted before it was recorded")
        elif rec and applied is not None and rec.get("generation") != applied[1].get(
                "generation", 0):
            out.append("the kernel holds another blocklist than the one recorded "
                       "(nftables was applied, the rest of that sync was not)")
        if rec and rec.get("config") != config_hash(fw):
            out.append("the firewall settings changed since the table was applied")
    verdict = isolation.current(config, store, iso)
    why = isolation_disagreement(config, verdict, iso)  # on the boot's clock, not the wall's
    if why is not None:
        out.append(why)
    if verdict.adopted:
        out.append(f"the kernel cuts {', '.join(sorted(iso.wan))} but no isolation is "
                   "recorded (break-glass.nft or a manual change)")
    return out


class NftablesBackend(Backend):
    name = "nftables"

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or Nft()

    def view(self, table: str) -> KernelView:
        return KernelView(self.nft, table)

    def skeleton_hash(self, table: str) -> str | None:
        return self.view(table).skeleton_hash()

    def counters(self, table: str) -> dict[str, int]:
        return self.view(table).counters()

    def offenders(self, table: str) -> list[dict[str, Any]]:
        return self.view(table).offenders()

    def status(self, store: StateStore, config: Config) -> dict[str, Any]:
        """What `status` shows, read from the kernel: is the table there and as applied,
        the isolation it enforces, counters, offenders, and where it disagrees with intent."""
        fw = config.firewall
        view = self.view(fw.table)
        try:
            objects = view.skeleton()
            current = view.hash_of(objects)
            iso = view.isolation(objects)
            counters = view.counters(objects) if objects is not None else {}
            offenders = view.offenders() if objects is not None else []
        except ApplyError as exc:
            return {"table": fw.table, "error": exc.to_dict(), "table_present": None,
                    "in_sync": False, "counters": {}, "offenders": [],
                    "disagreements": [f"the kernel cannot be read: {exc.what}"]}
        problems = disagreements(config, store, current, iso, record.now())
        rec = store.load_nft_record()
        return {
            "table": fw.table, "table_present": current is not None,
            "in_sync": current is not None and not problems and current == rec.get("skeleton"),
            "counters": counters, "offenders": offenders,
            "kernel_isolation": {"wan": iso.wan, "peers": iso.peers, "allow": list(iso.allow),
                                 "chains": iso.chains},
            "disagreements": problems,
        }

    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        return TableWriter(ctx.config, ctx.store, self.nft).apply(plan, blocklist, ctx)

    def unchanged(self, ctx: ApplyContext) -> str | None:
        writer = TableWriter(ctx.config, ctx.store, self.nft)
        return "nftables: unchanged" if writer.holds(ctx.generation) else None
