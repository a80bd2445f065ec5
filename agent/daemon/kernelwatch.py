"""The kernel watcher: the running daemon notices what others do to its table and repairs it
through the one writer within about a second (its own thread: the loop, SIGHUP and the watchdog
pings never wait for it).

Two eyes (measured on nft 1.0.6; docs/design.md §6):
- a poll under the kernel lock, so that it never sees a commit without its records: every
  half second `nft -t list ruleset` (7 ms even with 1M elements: table present, chains, set
  definitions, hashed like the writer's record), every second the small sets (iso_wan, peer_*,
  iso_allow_*, mgmt_*; ~5 ms each). A missing table or a changed skeleton: a full reload;
- `nft monitor elements` (agent.daemon.nftmonitor) for the big sets. Its events, ours included,
  are folded per element and compared with what the agent wants (agent.daemon.kernelwant)
  once the kernel lock is free (a commit in progress has written its records): our own updates
  compare equal, a foreign deletion is re-added, a foreign addition deleted. Lost events (a
  flood, a restarted monitor): a few wanted elements are probed; one missing, a full reload.

Each repair goes to `on_repair` (journal ACTION=repair, the repairs metric); `facts` is the
kernel as last seen, for STATUS= and the metrics (agent.daemon.kernelfacts).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from agent.backends.base import Backend
from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelView, SetElement
from agent.backends.nft_writer import TableWriter
from agent.backends.nftables import NftablesBackend
from agent.config import Config
from agent.daemon import kernelfacts as facts_mod
from agent.daemon import kernelwant as want
from agent.daemon import nftmonitor
from agent.daemon.kernelfacts import KernelFacts, Repair
from agent.errors import AgentError, StateError
from agent.isolation import record
from agent.state import StateStore

log = logging.getLogger(__name__)
POLL = 0.5      # seconds between skeleton checks (7 ms each)
SMALL_EVERY = 1.0  # seconds between listings of the small sets (7 sets, ~5 ms each)
QUIET = 0.15    # seconds without a new event before a burst is compared
MAX_FOLD = 1.0  # ... or this long after its first event, whatever keeps coming
LOCK_WAIT = 60.0  # for a commit in progress before comparing events (a 1M full reload: ~25 s)
FLOOD = 20_000  # events in a second: the monitor is paused until the kernel lock is free
SAMPLE = 5  # wanted elements probed per big set when events were lost (20 ms each)
HOLD, UNKNOWN_FOR = 0.5, 30.0  # seconds: events wait for the records, retried, at most
BACKOFF = (2.0, 60.0)  # after a repair that failed
FULLS_PER_MINUTE = 5  # full reloads; beyond, each waits longer (a loop with something else)


class KernelWatcher:
    def __init__(self, config: Config, store: StateStore, nft: Nft, *,
                 on_repair: Callable[[Repair], None],
                 on_facts: Callable[[KernelFacts], None] = lambda facts: None,
                 writer: TableWriter | None = None, monitor: bool = True,
                 poll: float = POLL, quiet: float = QUIET) -> None:
        self.config = config
        self.store = store
        self.table = config.firewall.table
        self.view = KernelView(nft, self.table)
        self.writer = writer or TableWriter(config, store, nft)
        self.desired = want.Desired(config, store)
        self.on_repair = on_repair
        self.on_facts = on_facts
        self.poll_every = poll
        self.quiet = quiet
        self.monitor = (nftmonitor.ElementMonitor(nft.command, self.table, self._on_events)
                        if monitor else None)
        self.facts = KernelFacts()
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._events: list[nftmonitor.Event] = []
        self._lost = False
        self._burst_start = 0.0
        self._rate_start, self._rate = 0.0, 0
        self._last_event = 0.0
        self._retry_at = 0.0
        self._flood = ""  # "", "stopped" (until the kernel lock is free), "draining"
        self._calm_after = 0.0  # a drain's tail is not a new flood
        self._small_at = 0.0
        self._hold_until = 0.0
        self._fulls: list[float] = []
        self._kept: set[tuple[str, str]] = set()
        self.poll_now = False
        self._failures = 0

    # -- life -----------------------------------------------------------------------------
    def start(self) -> None:
        if self.monitor is not None:
            self.monitor.start()
            self.monitor.started.wait(timeout=5)
        self.thread = threading.Thread(target=self._run, name="kernel-watch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        if self.monitor is not None:
            self.monitor.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _on_events(self, events: list[nftmonitor.Event], lost: bool) -> None:
        """From the monitor's thread: queue, note the time, wake the watcher."""
        now = time.monotonic()
        stop = False
        with self.cond:
            if not self._events and not self._lost:
                self._burst_start = now
            if now - self._rate_start > 1.0:
                self._rate_start, self._rate = now, 0
            self._rate += len(events)
            self._events.extend(events)
            self._lost = self._lost or lost
            self._last_event = now
            if self._rate > FLOOD and not self._flood and now > self._calm_after and \
                    self.monitor is not None:
                # a full reload (ours, most likely) or a flushed big set: a listener makes a
                # big commit 2-3 times slower. Stop listening until the commit is over (the
                # kernel queues, or drops and says so), then drain and compare it all at once.
                self._flood, stop = "stopped", True
            self.cond.notify_all()
        if stop and self.monitor is not None:
            log.debug("kernel watcher: a flood of events; the monitor waits for the commit")
            self.monitor.pause()

    def _run(self) -> None:
        next_poll = 0.0
        while not self.stopping.is_set():
            with self.cond:
                now = time.monotonic()
                due = next_poll
                if self._events or self._lost:
                    due = min(due, self._burst_due())
                if self.poll_now:
                    due = now
                if due > now:
                    self.cond.wait(due - now)
                    continue
            try:
                if time.monotonic() >= next_poll or self.poll_now:
                    self.poll_now = False
                    next_poll = time.monotonic() + self.poll_every
                    self.poll()
                    self.desired.blocklist()  # read again here if it changed, not when needed
                if self._burst_ready():
                    self.check_events()
            except Exception:  # a bug here must not stop the watching: say it, go on
                log.exception("kernel watcher")
                self.stopping.wait(1.0)

    def _burst_due(self) -> float:
        """When the queued events are compared: after a quiet window, or MAX_FOLD after the
        first (a steady trickle); a flood only once it is over; held events a bit later."""
        quiet = self._last_event + self.quiet
        due = quiet if self._flood else min(quiet, self._burst_start + MAX_FOLD)
        return max(due, self._hold_until)

    def _burst_ready(self) -> bool:
        with self.cond:
            return bool(self._events or self._lost) and time.monotonic() >= self._burst_due()

    # -- the monitor's events -------------------------------------------------------------
    def check_events(self) -> None:
        with self.cond:
            events, lost, started = self._events, self._lost, self._burst_start
            self._events, self._lost = [], False
        try:
            # the barrier: a commit in progress finishes and writes its records first
            with self.store.kernel_lock(LOCK_WAIT):
                intent = self.writer.desired_isolation()
                big_known = self.desired.big_known(self.store.load_nft_record())
            with self.cond:
                flood = self._flood
                self._flood = "draining" if flood == "stopped" else ""
                if flood == "draining":
                    self._calm_after = time.monotonic() + 2.0
        except StateError as exc:
            log.warning("kernel watcher: %s; comparing later", exc.what)
            with self.cond:
                self._events[:0] = events
                self._lost = self._lost or lost
            return
        if flood == "stopped":  # the commit (if any) is over: what does the kernel hold?
            missing = self._sample_missing({e.set for e in events}) if big_known else ""
            if missing:  # a flushed big set, most likely: reload now, the monitor still paused
                self.full("events_lost", f"a flood of events, and wanted elements are missing: "
                          f"{missing}", started)
                return
            with self.cond:  # a full reload of ours: let the monitor drain what it holds
                self._events[:0] = events
                self._lost = self._lost or lost
                self._last_event = time.monotonic()
            if self.monitor is not None:
                self.monitor.resume()
            return
        if not big_known and self._hold(events, lost, started):
            events, lost = [e for e in events if e.set not in want.BIG_SETS], False
        log.debug("kernel watcher: %d events folded (lost: %s, big sets known: %s)",
                  len(events), lost, big_known)
        if lost and big_known:
            missing = self._sample_missing({e.set for e in events} if events else None)
            if missing:
                self.full("events_lost", "nft monitor lost events (a flood, or it restarted), "
                          f"and wanted elements are missing: {missing}", started)
                return
        now = record.now()
        small = self.desired.small(intent.live(now), now)
        fixes = want.compare_events(want.fold(events), self.desired, small, big_known)
        self._apply(fixes, started)

    def _hold(self, events: list[nftmonitor.Event], lost: bool, started: float) -> bool:
        """The records do not say yet which list the kernel holds (a sync between its nftables
        commit and its last record): the big sets' events wait for them, a while."""
        held = [e for e in events if e.set in want.BIG_SETS]
        if not (held or lost):
            return False
        if time.monotonic() - started > UNKNOWN_FOR:
            log.warning("kernel watcher: %d element events not judged: the records do not say "
                        "which list the kernel holds (a partial apply); the next sync reloads "
                        "the table whole", len(held))
            return True
        with self.cond:
            if not self._events and not self._lost:
                self._burst_start = started
            self._events[:0] = held
            self._lost = self._lost or lost
            self._hold_until = time.monotonic() + HOLD
        return True

    def _sample_missing(self, sets: set[str] | None) -> str:
        return want.sample_missing(self.view.present, self.desired.big(), sets, SAMPLE)

    # -- the poll -------------------------------------------------------------------------
    def poll(self) -> None:
        """Look without the lock (it writes the lock file: not twice a second on a gateway's
        flash); when something disagrees, look again under it (a commit in progress and its
        records are then one), and repair what that second look shows."""
        started = time.monotonic()
        small_due = started >= self._small_at
        if small_due:
            self._small_at = started + SMALL_EVERY
        try:
            look = self._look(small_due)
            if look is not None and not look.agrees:
                with self.store.kernel_lock(0):  # a commit in progress: the next poll
                    look = self._look(small_due)
        except StateError:
            return
        except AgentError as exc:
            self._facts(KernelFacts(problem=f"cannot read the kernel: {exc.what}"))
            return
        if look is None:  # a small set vanished between two listings: look again at once
            self.poll_now = True
            return
        self._facts(look.facts)
        if look.full is not None:
            self.full(*look.full, started)
        elif look.fixes:
            self._apply(look.fixes, started)

    def _look(self, small_due: bool) -> facts_mod.Look | None:
        objects = self.view.skeleton()
        nft_record = self.store.load_nft_record()
        now = record.now()
        live = self.writer.desired_isolation().live(now)
        found: dict[str, list[SetElement]] = {}
        if objects is not None and small_due:
            names = {o["set"].get("name") for o in objects if "set" in o}
            for name in want.SMALL_SETS:
                listed = self.view.small_set(name) if name in names else None
                if listed is None and name in names:
                    return None
                if listed is not None:
                    found[name] = listed
        iso = (self.facts.isolation if objects is not None and not small_due  # as last listed
               else facts_mod.isolation_of(objects, found))
        facts = KernelFacts(readable=True, table_present=objects is not None, isolation=iso,
                            intent_active=live.active)
        if objects is None:
            if not (nft_record or live.active or live.peers):
                return facts_mod.Look(facts)  # nothing applied yet, nothing to expect
            return facts_mod.Look(
                facts_mod.facts_with(facts, "the table is absent from the kernel"),
                full=("table_deleted", f"table inet {self.table} is absent from the kernel "
                      "(nft flush ruleset, nft delete table, or nftables.service restarted)"))
        recorded = nft_record.get("skeleton")
        facts = replace(facts, in_sync=None if not recorded
                        else self.view.hash_of(objects) == recorded)
        if facts.in_sync is False:
            what = want.skeleton_changes(objects, want.expected_objects(self.config))
            return facts_mod.Look(
                facts_mod.facts_with(facts, f"the table differs from the last apply ({what})"),
                full=("ruleset_changed", f"table inet {self.table} changed outside the agent: "
                      f"{what}"))
        kernel = {name: [e.value for e in elements] for name, elements in found.items()}
        fixes = want.compare_small(kernel, self.desired.small(live, now)) if small_due else {}
        self._say_kept(fixes)
        return facts_mod.Look(facts, fixes={k: f for k, f in fixes.items() if f.add or f.delete})

    def _say_kept(self, fixes: dict[str, want.Fix]) -> None:
        """A foreign cut (break-glass) is said once, not at every poll."""
        kept = {(name, value) for name, fix in fixes.items() for value in fix.kept}
        for name, value in sorted(kept - self._kept):
            log.warning("kernel watcher: %s added to %s outside the agent (break-glass?): "
                        "kept; `blocklist-agent restore` lifts it", value, name)
        self._kept = kept

    # -- repairs --------------------------------------------------------------------------
    def _apply(self, fixes: dict[str, want.Fix], started: float) -> None:
        """Element repairs: the big sets element by element; the small ones (isolation,
        management) whole from the intent the writer reads under its lock, so a restore that
        committed since this decision is never undone."""
        small = []
        for set_name, fix in sorted(fixes.items()):
            if not (fix.add or fix.delete):
                continue
            found = f"set {set_name}: " + facts_mod.account(fix)
            if set_name in want.SMALL_SETS:
                small.append((set_name, fix, found))
                continue
            self._repair("element_deleted" if fix.add else "element_added", found, started,
                         functools.partial(self.writer.repair_elements, set_name, fix.add,
                                           fix.delete, found))
        if small:
            found = "; ".join(text for _, _, text in small)
            lifted = any(name == "iso_wan" and fix.add for name, fix, _ in small)
            kind = ("isolation_lifted" if lifted else
                    "element_deleted" if any(fix.add for _, fix, _ in small) else
                    "element_added")
            self._repair(kind, found, started, lambda: facts_mod.isolation_line(
                self.writer.repair_isolation(found)))

    def full(self, kind: str, found: str, started: float) -> None:
        """A full reload through the writer, with the monitor paused: the reload's own flood of
        element events would slow it down and tell nothing. Then a few elements are probed
        (lost events), once the monitor has drained."""
        now = time.monotonic()
        if now < self._retry_at:
            return
        self._fulls = [t for t in self._fulls if now - t < 60] + [now]
        if len(self._fulls) > FULLS_PER_MINUTE:  # something undoes every repair: back off
            self._retry_at = now + min(BACKOFF[0] * 2 ** (len(self._fulls) - 5), BACKOFF[1])
        self.poll_now, self._small_at = True, 0.0  # the facts after the repair, at once
        if self.monitor is not None:
            self.monitor.pause()
        try:
            self._repair(kind, found, started, lambda: self.writer.repair(found), full=True)
        finally:
            with self.cond:  # what the monitor said before is moot; what it holds, drained
                self._events, self._lost, self._flood = [], False, "draining"
                self._last_event = self._burst_start = time.monotonic()
            if self.monitor is not None:
                self.monitor.resume()

    def _repair(self, kind: str, found: str, started: float, do: Callable[[], str],
                full: bool = False) -> None:
        """Run one repair and report it. A failed full reload backs off; a failed element
        repair asks for a poll at once (the table may have gone meanwhile: a full reload)."""
        try:
            done, ok = do(), True
        except AgentError as exc:
            ok, retry = False, "at the next check"
            if full:
                self._failures += 1
                delay = min(BACKOFF[0] * 2 ** (self._failures - 1), BACKOFF[1])
                self._retry_at, retry = time.monotonic() + delay, f"in {delay:.0f} s"
            else:
                self.poll_now = True
            done = f"repair failed ({exc.what}); retrying {retry}"
        if full and ok:
            self._failures = 0
        self.on_repair(Repair(kind, found, done, ok, time.monotonic() - started))

    def _facts(self, facts: KernelFacts) -> None:
        changed = facts.key() != self.facts.key()
        self.facts = facts
        if changed:
            self.on_facts(facts)


def start_kernel_watch(config: Config, store: StateStore, backends: Sequence[Backend], *,
                       on_repair: Callable[[Repair], None], on_news: Callable[[], None]
                       ) -> KernelWatcher | None:
    """The daemon's watcher, started: for the nftables firewall only, through the nft command
    of its backend (the lab's `ip netns exec NS nft` included)."""
    if config.firewall.backend != "nftables":
        return None
    nft = next((b.nft for b in backends if isinstance(b, NftablesBackend)), Nft())
    watcher = KernelWatcher(config, store, nft, on_repair=on_repair,
                            on_facts=lambda _facts: on_news())
    watcher.start()
    return watcher
