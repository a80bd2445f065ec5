"""The one writer of the agent's nftables table (docs/design.md §6, §8, §12).

Every change of the table — a sync's apply (incremental or full reload), isolate, restore, a
peer quarantine, a repair — goes through `TableWriter`, under the kernel lock in `state_dir`:

1. the isolation intent is read under the lock, so a full reload carries the isolation that
   holds at the moment of the commit, never a copy read before an `isolate` that ran meanwhile;
2. `nftables.json` is marked `pending`, the change is committed as one `nft -f` transaction,
   the kernel is read back;
3. only then the records are written, still under the lock: `nftables.json` (the generation
   the kernel now holds, the skeleton hash), `enforced.nft` + `isolation.nft` for the boot
   path, `break-glass.nft`, `isolation.json`.

A crash between 2 and 3 leaves `pending`; a sync whose DNS apply failed after nftables
committed leaves a generation other than applied.json's. Either way the kernel's content is
not what the records say, and the next apply is a full reload: one atomic transaction that is
right whatever the kernel held. Manual element edits are found by the daemon's kernel watcher
and undone with `repair_elements`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

from agent.backends.base import ApplyContext
from agent.backends.nft_boot import boot_table
from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelIsolation, KernelView
from agent.config import Config, FirewallConfig
from agent.errors import ApplyError
from agent.isolation import record
from agent.isolation.model import IsolationState
from agent.merge import Blocklist
from agent.plan import Plan
from agent.render.common import checked
from agent.render.nft_blocklist import render_table, render_update
from agent.render.nft_isolation import render_break_glass, render_isolation_script
from agent.state import StateStore

log = logging.getLogger(__name__)


def config_hash(fw: FirewallConfig) -> str:
    """Everything of the table that is not elements: a settings change means a full reload."""
    return hashlib.sha256(render_table(fw, Blocklist()).encode()).hexdigest()


def _include(path: str) -> str | None:
    """The `include` line enforced.nft ends with, when the path can be written in nft."""
    if any(c in path for c in '"\\\n') or not path.startswith("/"):
        return None
    return f'include "{path}"\n'


class TableWriter:
    def __init__(self, config: Config, store: StateStore, nft: Nft | None = None,
                 lock_timeout: float = 30.0) -> None:
        self.config = config
        self.fw = config.firewall
        self.store = store
        self.nft = nft or Nft()
        self.view = KernelView(self.nft, self.fw.table)
        self.lock_timeout = lock_timeout

    # -- reading ----------------------------------------------------------------------------
    def desired_isolation(self) -> IsolationState:
        """The intent (isolation.json); call it under the lock when the answer is committed."""
        return record.load(self.store)

    def _carried_isolation(self, now: int) -> IsolationState:
        """What a full reload must carry: the intent, with the time the kernel has left on a
        deadline when the kernel still holds it (the kernel's timeout is the truth, not the
        wall clock, which may have jumped)."""
        state = self.desired_isolation()
        try:
            kernel = self.view.isolation()
        except ApplyError:
            return state.live(now)
        if state.active and kernel.wan:
            left = [s for s in kernel.wan.values() if s is not None]
            if left and state.deadline is not None:
                state = replace(state, deadline=now + max(1, min(left)))
            return state
        if not state.active and kernel.wan and not self.store.load_isolation():
            # the kernel is isolated with no record at all: break-glass.nft was loaded by hand;
            # a reload keeps it (restore lifts it)
            return IsolationState(active=True, since=now, by="break-glass",
                                  reason="break-glass.nft loaded with nft -f",
                                  allow=state.allow, resolved=state.resolved)
        return state.live(now)

    # -- committing -------------------------------------------------------------------------
    def _commit(self, script: str, *, generation: int | None, blocklist: Blocklist | None,
                isolation: IsolationState, now: int) -> None:
        """Mark pending, commit, read back, write every record. Called under the lock."""
        rec = self.store.load_nft_record()
        if rec:
            self.store.save_nft_record({**rec, "pending": True})
        self.nft.load(script)
        skeleton = self.view.skeleton_hash()
        rec = {**rec, "table": self.fw.table, "config": config_hash(self.fw),
               "skeleton": skeleton, "pending": False}
        if generation is not None:
            rec["generation"] = generation
        self._write_boot_files(isolation, now, blocklist)
        record.save(self.store, isolation)
        if generation is not None or self.store.has_nft_record():
            self.store.save_nft_record(rec)

    def _write_boot_files(self, isolation: IsolationState, now: int,
                          blocklist: Blocklist | None) -> None:
        iso_script = render_isolation_script(self.fw, isolation, now)
        self.store.save_isolation_boot(iso_script)
        self.store.save_break_glass(render_break_glass(self.fw, isolation, now))
        if blocklist is not None:
            include = _include(str(self.store.isolation_boot_path()))
            table, parts = boot_table(self.fw, blocklist, self.store)
            self.store.save_boot_ruleset(table + (include or iso_script))
            self.store.sweep_boot_parts(parts)

    def refresh_isolation_boot(self, now: int) -> None:
        """Rewrite isolation.nft with the time now left (the daemon, each minute, while a
        deadline runs), so that a reboot keeps the remaining time, not the whole length."""
        with self.store.kernel_lock(self.lock_timeout):
            state = self._carried_isolation(now)
            self.store.save_isolation_boot(render_isolation_script(self.fw, state, now))

    def holds(self, generation: int) -> bool:
        """Does the kernel hold exactly the table recorded as `generation` (no apply pending,
        same settings, no drift)? Read-only: a sync that needs no change asks this."""
        try:
            current = self.view.skeleton_hash()
        except ApplyError:
            return False
        return self._full_reason(False, generation + 1, current) is None

    def _full_reason(self, first: bool, generation: int, current: str | None) -> str | None:
        """Why applying `generation` by difference is not safe (None: it is)."""
        rec = self.store.load_nft_record()
        if current is None:
            return "the table is absent"
        if first or not rec:
            return "no record of a previous apply"
        if rec.get("pending"):
            return "the previous apply was interrupted before it was recorded"
        if rec.get("generation") != generation - 1:
            return ("the kernel holds another list than the one recorded (a previous sync "
                    "applied nftables but not everything else)")
        if rec.get("config") != config_hash(self.fw):
            return "the firewall settings changed"
        if rec.get("skeleton") != current:
            return "the table was altered outside the agent (drift)"
        return None

    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        """A sync's apply: by difference when the kernel holds what the record says, else a
        full reload; under the lock either way."""
        with self.store.kernel_lock(self.lock_timeout):
            now = record.now()
            why_full = self._full_reason(plan.first, ctx.generation, self.view.skeleton_hash())
            if why_full is None:
                if plan.empty:
                    self.store.save_nft_record(
                        {**self.store.load_nft_record(), "generation": ctx.generation})
                    return "nftables: unchanged"
                try:
                    self._commit(render_update(self.fw, plan, blocklist),
                                 generation=ctx.generation, blocklist=blocklist,
                                 isolation=self.desired_isolation(), now=now)
                except ApplyError as exc:
                    why_full = f"the incremental update was refused ({exc.what.splitlines()[0]})"
                else:
                    return (f"nftables: incremental update, +{plan.added} -{plan.removed} "
                            "entries")
            log.warning("nftables: full reload of table %s: %s", self.fw.table, why_full)
            self._reload(blocklist, ctx.generation, now)
            return f"nftables: full reload ({why_full})"

    def _reload(self, blocklist: Blocklist, generation: int | None, now: int) -> None:
        iso = self._carried_isolation(now)
        script = render_table(self.fw, blocklist) + render_isolation_script(self.fw, iso, now)
        self._commit(script, generation=generation, blocklist=blocklist, isolation=iso, now=now)

    def set_isolation(self, state: IsolationState, now: int) -> KernelIsolation:
        """isolate / restore / quarantine: commit `state`, read the kernel back, record it."""
        with self.store.kernel_lock(self.lock_timeout):
            self._commit(render_isolation_script(self.fw, state, now), generation=None,
                         blocklist=self._boot_blocklist(), isolation=state, now=now)
            return self.view.isolation()

    def _boot_blocklist(self) -> Blocklist | None:
        """None when enforced.nft already includes isolation.nft (the usual case: isolating
        rewrites only the small file); else the blocklist it must be written with: the applied
        one if the kernel holds it, none otherwise (the next sync reloads it whole)."""
        include = _include(str(self.store.isolation_boot_path()))
        current = self.store.boot_ruleset_tail()
        if include is not None and current is not None and current.endswith(include):
            return None
        rec, applied = self.store.load_nft_record(), self.store.load_applied()
        if applied is not None and rec and not rec.get("pending") and rec.get(
                "generation") == applied[1].get("generation", 0):
            return applied[0]
        self.store.forget_nft_record()
        return Blocklist()

    def repair(self, reason: str) -> str:
        """Make the kernel hold the recorded blocklist and isolation again (a full reload)."""
        with self.store.kernel_lock(self.lock_timeout):
            applied = self.store.load_applied()
            blocklist, meta = applied if applied is not None else (Blocklist(), {})
            now = record.now()
            log.warning("nftables: repair of table %s: %s", self.fw.table, reason)
            self._reload(blocklist, int(meta.get("generation", 0)), now)
            return f"nftables: repaired by a full reload ({reason})"

    def repair_elements(self, set_name: str, add: list[str], delete: list[str],
                        reason: str) -> str:
        """Undo element edits made by others: one transaction. A deletion is written as add
        then delete, which succeeds whether or not the element is still there."""
        if not add and not delete:
            return "nftables: nothing to repair"
        t = self.fw.table
        lines = []
        if add:
            body = ", ".join(checked(add, "address"))
            lines.append(f"add element inet {t} {set_name} {{ {body} }}")
        if delete:
            body = ", ".join(checked(delete, "address"))
            lines.append(f"add element inet {t} {set_name} {{ {body} }}")
            lines.append(f"delete element inet {t} {set_name} {{ {body} }}")
        with self.store.kernel_lock(self.lock_timeout):
            self.nft.load("\n".join(lines) + "\n")
        log.warning("nftables: repaired set %s (+%d -%d): %s", set_name, len(add), len(delete),
                    reason)
        return f"nftables: repaired set {set_name}: +{len(add)} -{len(delete)} ({reason})"
