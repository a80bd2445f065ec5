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

Each boot file is checked with `nft -c -f` before it replaces the old one, and its sha256 is
kept in `nftables.json`: a sync that changes nothing still finds a damaged boot file and writes
it again. A record that cannot be written (a full disk) never stops the kernel change (the
kill switch must cut on a full disk too): the commit stands, `nftables.json` is dropped so the
next apply is a full reload, and a StateError names every file that did not persist.

A crash between 2 and 3 leaves `pending`; a sync whose DNS apply failed after nftables
committed leaves a generation other than applied.json's. Either way the kernel's content is
not what the records say, and the next apply is a full reload: one atomic transaction that is
right whatever the kernel held. Manual element edits are found by the daemon's kernel watcher
and undone with `repair_elements`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent import isolation
from agent.backends.base import ApplyContext
from agent.backends.nft_boot import boot_table
from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelIsolation, KernelView
from agent.config import Config, FirewallConfig
from agent.errors import AgentError, ApplyError, StateError
from agent.isolation import record
from agent.isolation.model import IsolationState
from agent.merge import Blocklist
from agent.plan import Plan
from agent.render.common import BLOCK_SETS, checked
from agent.render.nft_blocklist import render_table, render_update, rooms_for
from agent.render.nft_isolation import render_break_glass, render_isolation_script
from agent.state import StateStore
from agent.state.store import BOOT_PARTS, ISOLATION_NFT
from agent.util.ifname import ifname_problem

log = logging.getLogger(__name__)


def config_hash(fw: FirewallConfig) -> str:
    """Everything of the table that is not elements: a settings change means a full reload."""
    return hashlib.sha256(render_table(fw, Blocklist()).encode()).hexdigest()


class NotPersisted(StateError):
    """The kernel holds the change, but records were not written (a full disk): `failed` names
    each, as "file (why)", for the caller to report (isolate goes on to its audit trail)."""

    def __init__(self, failed: Sequence[str], where: str) -> None:
        super().__init__(
            "the kernel holds the change, but these files were NOT written: " + "; ".join(failed),
            where=where, reason="state-write",
            hint="free space or fix the state directory (df -h, dmesg), then run the command "
            "again: until then a reboot loads the previous boot files")
        self.failed = tuple(failed)


def _include(path: str) -> str | None:
    """The `include` line enforced.nft ends with, when the path can be written in nft."""
    if any(c in path for c in '"\\\n') or not path.startswith("/"):
        return None
    return f'include "{path}"\n'


@dataclass(frozen=True)
class _Enforced:
    """enforced.nft's table (parts written), before the file itself is checked and replaced."""

    rooms: dict[str, int]  # the hash sets' sizes it declares
    damaged: list[str]     # the boot files found damaged (their parts were written again)
    table: str             # "" when a part could not be written (`error`)
    parts: list[str]
    check: str             # what `nft -c` checks: the table without its elements
    error: str | None = None
    checked: str | None = None  # sha256 of the text `nft -c` accepted (isolation inline)


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
        """The intent for the current configuration (agent.isolation.intent: the record with
        its deadlines on the boot's clock, the configured essentials); call it under the lock
        when the answer is committed."""
        return isolation.desired(self.config, self.store)

    def _carried_isolation(self, now: int) -> IsolationState:
        """What a full reload must carry: the intent, with the time the kernel has left on a
        deadline when it holds the elements, and an isolation the kernel holds without a
        record (break-glass.nft) kept (restore lifts it)."""
        try:
            kernel: KernelIsolation | None = self.view.isolation()
        except ApplyError:
            kernel = None
        return isolation.desired(self.config, self.store, kernel)

    def _follow_config(self, note: str, now: int) -> str:
        """Under the lock, after a sync's apply that left the isolation sets alone: they follow
        the current configuration (wan_interfaces or the essentials changed while isolated)."""
        kernel = self.view.isolation()
        state = isolation.desired(self.config, self.store, kernel)
        why = isolation.drift(self.config, state, kernel)
        if why is None:
            return note
        log.warning("nftables: isolation re-applied: %s", why)
        self._commit(render_isolation_script(self.fw, state, now), generation=None,
                     blocklist=self._boot_blocklist(), isolation=state, now=now)
        return f"{note}; isolation re-applied ({why})"

    # -- committing -------------------------------------------------------------------------
    def _commit(self, script: str, *, generation: int | None, blocklist: Blocklist | None,
                isolation: IsolationState, now: int,
                rooms: Mapping[str, int] | None = None) -> None:
        """Mark pending, commit, read back, write every record. Called under the lock.

        With `rooms` (the hash sets' sizes the kernel will hold after the commit), the parts
        of enforced.nft are rendered and written while nft loads (the part of the base alone is
        12 MB at a million elements), and enforced.nft's text is checked with `nft -c`: it
        replaces our table whole, so the answer does not depend on what the kernel holds. The
        parts are named by their content, so a refused commit leaves parts no boot file
        names, swept by the next; enforced.nft itself is replaced only after the commit."""
        failed: list[str] = []
        rec = self.store.load_nft_record()
        if rec:
            _attempt(failed, "nftables.json",
                     lambda: self.store.save_nft_record({**rec, "pending": True}))
        early: _Enforced | None = None
        if blocklist is not None and rooms is not None:
            with ThreadPoolExecutor(max_workers=1) as pool:
                loading = pool.submit(self.nft.load, script)
                try:
                    early = self._enforced(blocklist, rooms, iso_script=render_isolation_script(
                        self.fw, isolation, now))
                except Exception:  # done again after the commit, where its error is reported
                    early = None
                loading.result()
        else:
            self.nft.load(script)
        objects = self.view.skeleton()
        skeleton = self.view.hash_of(objects)
        rec = {**rec, "table": self.fw.table, "config": config_hash(self.fw),
               "skeleton": skeleton, "pending": False}
        if generation is not None:
            rec["generation"] = generation
        rec["boot"] = _boot_record(rec.get("boot", {}),
                                   self._write_boot_files(isolation, now, blocklist, failed,
                                                          KernelView.rooms(objects), early))
        _attempt(failed, "isolation.json", lambda: record.save(self.store, isolation))
        if failed:
            self.store.forget_nft_record()  # the next apply reloads whole, whatever was written
        elif generation is not None or self.store.has_nft_record():
            _attempt(failed, "nftables.json", lambda: self.store.save_nft_record(rec))
        if failed:
            raise NotPersisted(failed, str(self.store.root))

    def _enforced(self, blocklist: Blocklist, rooms: Mapping[str, int],
                  iso_script: str | None = None) -> _Enforced:
        """enforced.nft's table and its parts written, a damaged part written again; with
        `iso_script` (what isolation.nft will hold), what `nft -c` accepted of it checked."""
        damaged = self.boot_files_damaged()
        self.store.boot_parts.remove(d.partition("/")[2] for d in damaged
                                     if d.startswith(f"{BOOT_PARTS}/"))
        declared = rooms_for(blocklist, rooms)
        try:
            table, parts, check_text = boot_table(self.fw, blocklist, self.store, declared)
        except OSError as exc:  # a part could not be written (a full disk)
            log.error("nftables: could not write the parts of enforced.nft: %s", exc)
            return _Enforced(declared, damaged, "", [], "", str(exc.strerror or exc))
        checked = None
        if iso_script is not None:
            text = check_text + iso_script
            try:
                self.nft.load(text, check_only=True)
                checked = _sha(text)
            except ApplyError:  # checked again after the commit, which reports it
                pass
        return _Enforced(declared, damaged, table, parts, check_text, checked=checked)

    def _write_boot_files(self, isolation: IsolationState, now: int,
                          blocklist: Blocklist | None, failed: list[str],
                          rooms: dict[str, int], early: _Enforced | None = None
                          ) -> dict[str, str]:
        """isolation.nft, break-glass.nft and (with `blocklist`) enforced.nft, each checked by
        `nft -c` first; returns the sha256 of each file written. enforced.nft declares the
        sets with the kernel's `rooms`, so that the table a boot loads is the one recorded
        (`early`, prepared during the commit, serves if it declared them)."""
        iso_script = render_isolation_script(self.fw, isolation, now)
        files: list[tuple[str, str, Callable[..., Path]]] = [
            ("isolation.nft", iso_script, self.store.save_isolation_boot),
            ("break-glass.nft", render_break_glass(self.fw, isolation, now),
             self.store.save_break_glass)]
        recorded = self.store.load_nft_record().get("boot") or {}
        damaged: list[str] = []
        if blocklist is not None:
            include = _include(str(self.store.isolation_boot_path()))
            enforced = (early if early is not None and early.rooms == rooms_for(blocklist, rooms)
                        else self._enforced(blocklist, rooms))
            damaged = list(enforced.damaged)
            table, parts, check_text = enforced.table, list(enforced.parts), enforced.check
            if enforced.error is not None:
                failed.append(f"enforced.nft ({enforced.error})")
            checked_text = check_text + (include or iso_script)

            def check(_path: Path) -> None:  # the elements are what the kernel accepted
                self.nft.load(checked_text, check_only=True)

            if enforced.checked == _sha(check_text + iso_script):
                check = partial(self._checked_during_commit, check,
                                _sha(iso_script), include)
            if table:
                files.append(("enforced.nft", table + (include or iso_script),
                              partial(self.store.save_boot_ruleset, check=check)))
        written: dict[str, str] = {}
        for name, text, save in files:
            digest = _sha(text)
            if recorded.get(name) == digest == self.store.boot_file_sha256(name):
                written[name] = digest  # the file holds this very text, checked when written
                continue
            checked = save if name == "enforced.nft" else partial(save, check=self.nft.check_file)
            if _attempt(failed, name, partial(checked, text)):
                written[name] = digest
        if blocklist is not None and "enforced.nft" in written:
            self.store.boot_parts.sweep(parts)
            for part in parts:  # recorded like the files, so that damage to a part is seen;
                key = f"{BOOT_PARTS}/{part}"  # an intact one was just hashed by the damage check
                written[key] = (recorded[key] if key in recorded and key not in damaged
                                else self.store.boot_file_sha256(key) or "")
        return written

    def _checked_during_commit(self, check: Callable[[Path], None], iso_digest: str,
                               include: str | None, path: Path) -> None:
        """The check of enforced.nft when its text passed `nft -c` during the commit: done,
        unless the isolation.nft it includes does not hold the isolation it was checked with
        (that file could not be written)."""
        if include is not None and self.store.boot_file_sha256(ISOLATION_NFT) != iso_digest:
            check(path)

    def boot_files_damaged(self) -> list[str]:
        """The boot files whose content is not what was last written (truncated, edited)."""
        rec = self.store.load_nft_record()
        return [name for name, digest in (rec.get("boot") or {}).items()
                if self.store.boot_file_sha256(name) != digest]

    def refresh_isolation_boot(self, now: int) -> None:
        """Rewrite isolation.nft with the time now left (the daemon, each minute, while a
        deadline runs), so that a reboot keeps the remaining time, not the whole length."""
        with self.store.kernel_lock(self.lock_timeout):
            state = self._carried_isolation(now)
            text = render_isolation_script(self.fw, state, now)
            self.store.save_isolation_boot(text, check=self.nft.check_file)
            rec = self.store.load_nft_record()
            if rec:
                self.store.save_nft_record(
                    {**rec, "boot": {**rec.get("boot", {}), "isolation.nft": _sha(text)}})

    def holds(self, generation: int) -> bool:
        """Does the kernel hold exactly the table recorded as `generation` (no apply pending,
        same settings, no drift), isolation sets as the intent says, and are the boot files
        as written? Read-only: a sync that needs no change asks this (agent.shortcut); any
        doubt sends it through `apply`, which repairs what differs."""
        try:
            current = self.view.skeleton_hash()
            if self._full_reason(False, generation + 1, current) is not None:
                return False
            kernel = self.view.isolation()
        except ApplyError:
            return False
        state = isolation.desired(self.config, self.store, kernel)
        return (isolation.drift(self.config, state, kernel) is None
                and not self.boot_files_damaged())

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
            objects = self.view.skeleton()
            why_full = (self._full_reason(plan.first, ctx.generation, self.view.hash_of(objects))
                        or _outgrown(KernelView.rooms(objects), blocklist))
            if why_full is None:
                damaged = self.boot_files_damaged()
                if plan.empty and damaged:
                    self._commit_boot_only(blocklist, now, damaged)
                    return self._follow_config(
                        f"nftables: unchanged; boot files rewritten ({', '.join(damaged)})", now)
                if plan.empty:
                    self.store.save_nft_record(
                        {**self.store.load_nft_record(), "generation": ctx.generation})
                    return self._follow_config("nftables: unchanged", now)
                try:
                    self._commit(render_update(self.fw, plan, blocklist),
                                 generation=ctx.generation, blocklist=blocklist,
                                 isolation=self.desired_isolation(), now=now,
                                 rooms=KernelView.rooms(objects))
                except ApplyError as exc:
                    why_full = f"the incremental update was refused ({exc.what.splitlines()[0]})"
                else:
                    return self._follow_config(f"nftables: incremental update, +{plan.added} "
                                               f"-{plan.removed} entries", now)
            log.warning("nftables: full reload of table %s: %s", self.fw.table, why_full)
            self._reload(blocklist, ctx.generation, now)
            return f"nftables: full reload ({why_full})"

    def _commit_boot_only(self, blocklist: Blocklist, now: int, damaged: list[str]) -> None:
        """The kernel is right but a boot file is not: write them again (no kernel change)."""
        log.error("nftables: boot files damaged (%s): writing them again", ", ".join(damaged))
        self.store.boot_parts.remove(d.partition("/")[2] for d in damaged
                                     if d.startswith(f"{BOOT_PARTS}/"))
        failed: list[str] = []
        written = self._write_boot_files(self._carried_isolation(now), now, blocklist, failed,
                                         KernelView.rooms(self.view.skeleton()))
        rec = self.store.load_nft_record()
        _attempt(failed, "nftables.json", lambda: self.store.save_nft_record(
            {**rec, "boot": _boot_record(rec.get("boot", {}), written)}))
        if failed:
            raise StateError("these boot files are damaged and could not be written again: "
                             + "; ".join(failed), where=str(self.store.root),
                             reason="state-write", hint="free space or fix the state directory")

    def _reload(self, blocklist: Blocklist, generation: int | None, now: int) -> None:
        iso = self._carried_isolation(now)
        script = render_table(self.fw, blocklist) + render_isolation_script(self.fw, iso, now)
        self._commit(script, generation=generation, blocklist=blocklist, isolation=iso, now=now,
                     rooms=rooms_for(blocklist))

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

    def repair_isolation(self, reason: str) -> KernelIsolation:
        """Put the isolation intent back into the isolation and management sets (the daemon's
        watcher found them changed by others), read under the lock as a reload reads it. A cut
        the kernel holds beyond the intent (break-glass.nft) is kept: a repair never opens."""
        with self.store.kernel_lock(self.lock_timeout):
            now = record.now()
            state = self._carried_isolation(now)
            wanted = set(self.fw.wan_interfaces) if state.live(now).active else set()
            kept = [f'"{name}"' + (f" timeout {left}s" if left else "")
                    for name, left in self.view.isolation().wan.items()
                    if name not in wanted and ifname_problem(name) is None]
            script = render_isolation_script(self.fw, state, now)
            if kept:
                script += f"add element inet {self.fw.table} iso_wan {{ {', '.join(kept)} }}\n"
            self._commit(script, generation=None, blocklist=self._boot_blocklist(),
                         isolation=state, now=now)
            log.warning("nftables: repaired the isolation sets: %s", reason)
            return self.view.isolation()

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


def _outgrown(rooms: dict[str, int], blocklist: Blocklist) -> str | None:
    """Why the kernel's hash sets cannot take `blocklist` by difference: one would pass its
    declared size (the kernel refuses the element past it); a full reload declares more."""
    counts = blocklist.counts()
    for name, _, interval, _ in BLOCK_SETS:
        room = rooms.get(name)
        if not interval and room and counts[name] > room:
            return (f"set {name} outgrows its room: {counts[name]} elements, declared for "
                    f"{room}")
    return None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _boot_record(old: dict[str, str], written: dict[str, str]) -> dict[str, str]:
    """The sha256 of each boot file: a new enforced.nft replaces the list of its parts."""
    if "enforced.nft" in written:
        old = {k: v for k, v in old.items() if not k.startswith(f"{BOOT_PARTS}/")}
    return {**old, **written}


def _attempt(failed: list[str], name: str, write: Callable[[], object]) -> bool:
    """One record write after the kernel changed: a failure is noted, never raised, so that
    the other records are still tried and the caller reports them all at once."""
    try:
        write()
    except OSError as exc:
        failed.append(f"{name} ({exc.strerror or exc})")
    except AgentError as exc:
        failed.append(f"{name} ({exc.what.splitlines()[0]})")
    else:
        return True
    log.error("nftables: could not write %s after the kernel commit: %s", name, failed[-1])
    return False
