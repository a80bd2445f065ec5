"""The nftables backend: the merged blocklist into the agent's own table, atomically.

Measured on Debian 12's nft 1.0.6 with a million-element set (docs/design.md §6 and the issue
notes): `nft -f` of a 1 % diff takes 0.15 s and a flush + re-add of 10k prefixes 0.18 s, but
almost every listing command (`list table -t`, `list counters`, `get element`) takes ~30 s
because nft fetches every element first. Only `nft -t list ruleset` stays at 5 ms. Hence:

- the agent knows what it applied from its own record, never by listing sets;
- drift (table deleted, chains or sets altered by hand, firewall settings changed) is detected
  by hashing the terse ruleset listing of our table (no elements) against the hash recorded at
  the last apply, and repaired by a full reload;
- a normal update is one transaction: single addresses added/deleted by diff in the hash sets,
  changed prefix sets flushed and refilled whole; if the kernel refuses it (someone deleted an
  element by hand), the full reload follows, itself one transaction;
- `enforced.nft` in the state dir always holds the complete table as last applied, loadable
  with plain `nft -f` at boot (before the network, without Python).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from agent import isolation
from agent.backends.base import ApplyContext, Backend
from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelView
from agent.config import Config, FirewallConfig
from agent.errors import ApplyError
from agent.isolation import IsolationState
from agent.merge import Blocklist
from agent.plan import Plan
from agent.render.nft_blocklist import render_table, render_update
from agent.render.nft_isolation import render_break_glass, render_isolation_script
from agent.state import StateStore

log = logging.getLogger(__name__)


def _strip(obj: Any) -> Any:
    """A listing object without what changes on its own (handles, counter values)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if k not in ("handle", "packets", "bytes", "expires")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


class NftablesBackend(Backend):
    name = "nftables"

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or Nft()

    # -- reading the kernel, cheaply ------------------------------------------------------
    def table_objects(self, table: str) -> list[dict[str, Any]] | None:
        """Our table's objects from the terse JSON listing, or None if the table is absent."""
        data = json.loads(self.nft.run("-j", "-t", "list", "ruleset") or '{"nftables": []}')
        objects = []
        present = False
        for item in data.get("nftables", []):
            kind, body = next(iter(item.items()))
            if not isinstance(body, dict) or body.get("family") != "inet":
                continue
            if kind == "table" and body.get("name") == table:
                present = True
            elif body.get("table") == table:
                objects.append({kind: body})
        return objects if present else None

    def skeleton_hash(self, table: str) -> str | None:
        objects = self.table_objects(table)
        if objects is None:
            return None
        text = json.dumps(_strip(objects), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def counters(self, table: str) -> dict[str, int]:
        """Packets dropped per set (named counters `hit_<set>`), from the 5 ms listing."""
        out: dict[str, int] = {}
        for obj in self.table_objects(table) or []:
            counter = obj.get("counter")
            if counter and str(counter.get("name", "")).startswith("hit_"):
                out[counter["name"][4:]] = int(counter.get("packets", 0))
        return out

    def offenders(self, table: str) -> list[dict[str, Any]]:
        """Internal hosts that tried to reach a blocked destination (small dynamic sets)."""
        out: list[dict[str, Any]] = []
        for fam in ("v4", "v6"):
            try:
                text = self.nft.run("-j", "list", "set", "inet", table, f"offenders_{fam}")
            except ApplyError:
                continue
            for item in json.loads(text).get("nftables", []):
                for elem in item.get("set", {}).get("elem", []):
                    entry = elem.get("elem", elem) if isinstance(elem, dict) else elem
                    if isinstance(entry, dict):
                        counter = entry.get("counter") or {}
                        out.append({"address": entry.get("val"),
                                    "expires_in": entry.get("expires"),
                                    "packets": counter.get("packets")})
                    else:
                        out.append({"address": entry, "expires_in": None, "packets": None})
        return out

    def status(self, store: StateStore, config: Config) -> dict[str, Any]:
        """What `status` shows: is the table there and as applied, counters, offenders."""
        fw = config.firewall
        record = store.load_nft_record()
        try:
            current = self.skeleton_hash(fw.table)
            counters = self.counters(fw.table) if current else {}
            offenders = self.offenders(fw.table) if current else []
        except ApplyError as exc:
            return {"table": fw.table, "error": exc.to_dict(), "table_present": None,
                    "in_sync": False, "counters": {}, "offenders": []}
        return {
            "table": fw.table, "table_present": current is not None,
            "in_sync": current is not None and current == record.get("skeleton"),
            "counters": counters, "offenders": offenders,
        }

    # -- applying -------------------------------------------------------------------------
    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        fw = ctx.config.firewall
        record = ctx.store.load_nft_record()
        config_hash = _config_hash(fw)
        current = self.skeleton_hash(fw.table)
        why_full = None
        if current is None:
            why_full = "the table is absent"
        elif plan.first or not record:
            why_full = "no record of a previous apply"
        elif record.get("config") != config_hash:
            why_full = "the firewall settings changed"
        elif record.get("skeleton") != current:
            why_full = "the table was altered outside the agent (drift)"
        if why_full is None:
            if plan.empty:
                return self._keep_isolation(ctx, blocklist, "nftables: unchanged")
            try:
                self.nft.load(render_update(fw, plan, blocklist))
            except ApplyError as exc:
                why_full = f"the incremental update was refused ({exc.what.splitlines()[0]})"
            else:
                self._record(ctx, blocklist, config_hash, record.get("skeleton"))
                return self._keep_isolation(
                    ctx, blocklist,
                    f"nftables: incremental update, +{plan.added} -{plan.removed} entries")
        log.warning("nftables: full reload of table %s: %s", fw.table, why_full)
        # a reload must never lift or lose isolation
        iso = isolation.desired(ctx.config, ctx.store, KernelView(self.nft, fw.table).isolation())
        self.nft.load(render_table(fw, blocklist, iso, isolation.now()))
        self._record(ctx, blocklist, config_hash, None)
        return f"nftables: full reload ({why_full})"

    def _record(self, ctx: ApplyContext, blocklist: Blocklist, config_hash: str,
                skeleton: str | None) -> None:
        fw = ctx.config.firewall
        self.write_boot_files(ctx.store, fw, isolation.desired(ctx.config, ctx.store),
                              isolation.now(), blocklist)
        if skeleton is None:
            skeleton = self.skeleton_hash(fw.table)
        ctx.store.save_nft_record({"table": fw.table, "config": config_hash, "skeleton": skeleton})

    def _keep_isolation(self, ctx: ApplyContext, blocklist: Blocklist, note: str) -> str:
        """The isolation sets follow the current configuration (wan_interfaces or the
        essentials changed while isolated): the blocklist's own transaction leaves them be."""
        fw = ctx.config.firewall
        kernel = KernelView(self.nft, fw.table).isolation()
        state = isolation.desired(ctx.config, ctx.store, kernel)
        why = isolation.drift(ctx.config, state, kernel)
        if why is None:
            return note
        log.warning("nftables: isolation re-applied: %s", why)
        now = isolation.now()
        self.nft.load(render_isolation_script(fw, state, now))
        isolation.save(ctx.store, state)
        self.write_boot_files(ctx.store, fw, state, now, blocklist)
        return f"{note}; isolation re-applied ({why})"

    # -- the boot-path files, also rewritten by isolate and restore ------------------------
    @staticmethod
    def write_boot_files(store: StateStore, fw: FirewallConfig, state: IsolationState, now: int,
                         blocklist: Blocklist | None = None) -> None:
        """`enforced.nft` (the whole table with `state`, loadable at boot without Python) and
        `break-glass.nft` (isolation with plain nft).

        Without `blocklist` (isolate, restore): the one last applied if this backend's record
        says the kernel table holds it; else none, and the record is dropped, because the
        kernel table (if any) does not hold the blocklist: the next sync reloads it whole.
        """
        if blocklist is None:
            applied = store.load_applied() if store.has_nft_record() else None
            if applied is None:
                store.forget_nft_record()
            blocklist = Blocklist() if applied is None else applied[0]
        store.save_boot_ruleset(render_table(fw, blocklist, state, now))
        store.save_break_glass(render_break_glass(fw, state, now))


def _config_hash(fw: FirewallConfig) -> str:
    """Everything of the table that is not elements: a settings change means a full reload."""
    return hashlib.sha256(render_table(fw, Blocklist()).encode()).hexdigest()
