"""The kernel watcher: the running daemon notices what others do to its table and repairs it
through the one writer within about a second.

Two eyes, measured on nft 1.0.6 with a million elements loaded:
- a poll each second, under the kernel lock so that it never sees a commit without its
  records: `nft -t list ruleset` (7 ms: table present, chains and hooks, set definitions, hashed
  like the writer's record) and the small sets (iso_wan, peer_*, iso_allow_*, mgmt_*; ~5 ms
  each). A deleted table (`nft flush ruleset`, Debian's `systemctl restart nftables`) or a
  changed chain or set means a full reload;
- `nft monitor elements` (agent.daemon.nftmonitor) for the element changes the poll cannot see
  in the big sets. Its events, ours included, are folded per element over a short quiet window
  and the net result compared with what the agent wants (agent.daemon.kernelwant) once the
  kernel lock is free, that is once a commit in progress has written its records: our own
  incremental updates then compare equal, a foreign deletion is re-added, a foreign addition
  deleted. Lost events (the kernel's buffer overflowed, the monitor restarted) with no commit of
  ours meanwhile mean a full reload, since nothing cheaper can tell what was missed.

Everything runs on the watcher's own thread: the daemon's loop, SIGHUP and the watchdog pings
never wait for it. Each repair is reported (journal ACTION=repair, the repairs metric) through
the `on_repair` callback; `facts` is the kernel as last seen, for STATUS= and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent import isolation
from agent.backends.nft_exec import Nft
from agent.config import Config
from agent.daemon import kernelwant as want
from agent.daemon import nftmonitor
from agent.daemon.writer_standin import (
    KernelIsolation,
    KernelView,
    SetElement,
    TableWriter,
    kernel_lock,
)
from agent.errors import AgentError, StateError
from agent.state import StateStore

log = logging.getLogger(__name__)
POLL = 1.0      # seconds between skeleton checks
QUIET = 0.15    # seconds without a new event before a burst is compared
MAX_FOLD = 1.0  # ... or this long after its first event, whatever keeps coming
LOCK_WAIT = 60.0  # for a commit in progress before comparing events (a 1M full reload: ~25 s)
FLOOD = 50_000  # events in one burst: dropped, and the monitor paused until the lock is free
BACKOFF = (2.0, 60.0)  # after a repair that failed
FULLS_PER_MINUTE = 5  # full reloads; beyond, each waits longer (a loop with something else)


@dataclass(frozen=True)
class Repair:
    kind: str        # table_deleted, ruleset_changed, element_deleted, element_added,
                     # isolation_lifted, events_lost
    found: str       # what was found, for people
    done: str        # what the writer did, or the error
    ok: bool
    seconds: float   # from detection to repaired


@dataclass(frozen=True)
class KernelFacts:
    """The table as the kernel holds it now (not as recorded)."""

    readable: bool = False               # False: nft could not be asked
    table_present: bool = False
    in_sync: bool | None = None          # the skeleton is as last applied; None: no record
    isolation: KernelIsolation = field(default_factory=lambda: KernelIsolation(False))
    intent_active: bool = False          # what isolation.json says (live)
    problem: str = ""                    # found and not repaired (yet)

    def key(self) -> tuple[object, ...]:
        iso = self.isolation
        return (self.readable, self.table_present, self.in_sync, tuple(sorted(iso.wan)),
                tuple(sorted(iso.peers)), self.intent_active, self.problem)


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
        self._burst_gen: tuple[tuple[int, int], ...] = ()
        self._last_event = 0.0
        self._retry_at = 0.0
        self._flooded = False
        self._fulls: list[float] = []
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
        with self.cond:
            if self._flooded:
                return  # the tail of the flood, still in the pipe
            if not self._events and not self._lost:
                self._burst_start = now
                self._burst_gen = want.generation(self.store)
            self._events.extend(events)
            self._lost = self._lost or lost
            self._last_event = now
            flood = len(self._events) > FLOOD and self.monitor is not None
            if flood:
                # a full reload (ours, most likely) or a flush of a big set: as the kernel does
                # when its buffer overflows, say "lost" and stop listening until it is over
                self._events, self._lost, self._flooded = [], True, True
            self.cond.notify_all()
        if flood and self.monitor is not None:
            self.monitor.pause()

    def _run(self) -> None:
        next_poll = 0.0
        while not self.stopping.is_set():
            with self.cond:
                now = time.monotonic()
                due = next_poll
                if self._events or self._lost:
                    due = min(due, self._last_event + self.quiet, self._burst_start + MAX_FOLD)
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
                if self._burst_ready():
                    self.check_events()
            except Exception:  # a bug here must not stop the watching: say it, go on
                log.exception("kernel watcher")
                self.stopping.wait(1.0)

    def _burst_ready(self) -> bool:
        with self.cond:
            if not (self._events or self._lost):
                return False
            now = time.monotonic()
            return now - self._last_event >= self.quiet or now - self._burst_start >= MAX_FOLD

    # -- the monitor's events -------------------------------------------------------------
    def check_events(self) -> None:
        with self.cond:
            events, lost, gen0, started = (self._events, self._lost, self._burst_gen,
                                           self._burst_start)
            self._events, self._lost = [], False
        try:
            # the barrier: a commit in progress finishes and writes its records first
            with kernel_lock(self.store, LOCK_WAIT):
                intent = isolation.load(self.store)
                gen = want.generation(self.store)
                ours = gen != gen0
                if self._flooded and self.monitor is not None:
                    self._flooded = False
                    self.monitor.resume()
        except StateError as exc:
            log.warning("kernel watcher: %s; comparing later", exc.what)
            with self.cond:
                self._events[:0] = events
                self._lost = self._lost or lost
            return
        if lost and not ours:
            self.full("events_lost", "nft monitor lost events (or restarted) with no commit of "
                      "the agent meanwhile: what changed is unknown", started)
            return
        now = isolation.now()
        small = self.desired.small(intent.live(now), now)
        fixes = want.compare_events(want.fold(events), self.desired, small)
        self._apply(fixes, started, gen)

    # -- the poll -------------------------------------------------------------------------
    def poll(self) -> None:
        started = time.monotonic()
        try:
            with kernel_lock(self.store, 0):  # a commit in progress: look next second
                objects = self.view.skeleton()
                record = self.store.load_nft_record()
                intent = isolation.load(self.store)
                gen = want.generation(self.store)
                found: dict[str, list[SetElement]] = {}
                if objects is not None:
                    names = {o["set"].get("name") for o in objects if "set" in o}
                    for name in want.SMALL_SETS:
                        if name in names:
                            found[name] = self.view.small_set(name) or []
        except StateError:
            return
        except AgentError as exc:
            self._facts(KernelFacts(problem=f"cannot read the kernel: {exc.what}"))
            return
        now = isolation.now()
        live = intent.live(now)
        small = self.desired.small(live, now)
        kernel = {name: [e.value for e in elements] for name, elements in found.items()}
        iso = KernelIsolation(
            table_present=objects is not None,
            wan={e.value: e.expires for e in found.get("iso_wan", [])},
            peers={e.value: e.expires
                   for e in found.get("peer_v4", []) + found.get("peer_v6", [])},
            allow=tuple(kernel.get("iso_allow_v4", []) + kernel.get("iso_allow_v6", [])),
            chains=objects is not None and all(
                any(o.get("chain", {}).get("name") == f"iso_{h}" for o in objects)
                for h in ("forward", "output", "input")))
        facts = KernelFacts(readable=True, table_present=objects is not None,
                            isolation=iso, intent_active=live.active)
        expect_table = bool(record) or live.active or bool(live.peers)
        if objects is None:
            if expect_table:
                self._facts(facts_with(facts, "the table is absent from the kernel"))
                self.full("table_deleted", f"table inet {self.table} is absent from the "
                          "kernel (nft flush ruleset, nft delete table, or nftables.service "
                          "restarted)", started)
            else:
                self._facts(facts)
            return
        recorded = record.get("skeleton")
        in_sync = None if not recorded else self.view.hash_of(objects) == recorded
        facts = KernelFacts(readable=True, table_present=True, in_sync=in_sync, isolation=iso,
                            intent_active=live.active)
        if in_sync is False:
            what = want.skeleton_changes(objects, want.expected_objects(self.config))
            self._facts(facts_with(facts, f"the table differs from the last apply ({what})"))
            self.full("ruleset_changed", f"table inet {self.table} changed outside the agent: "
                      f"{what}", started)
            return
        self._facts(facts)
        fixes = want.compare_small(kernel, small)
        self._apply(fixes, started, gen)

    # -- repairs --------------------------------------------------------------------------
    def _apply(self, fixes: dict[str, want.Fix], started: float,
               gen: tuple[tuple[int, int], ...]) -> None:
        """The element repairs; `gen`: the records' generation the decisions were made on."""
        for set_name, fix in sorted(fixes.items()):
            for value in fix.kept:
                log.warning("kernel watcher: %s added to %s outside the agent (break-glass?): "
                            "kept; `blocklist-agent restore` lifts it", value, set_name)
            if not (fix.add or fix.delete):
                continue
            parts = []
            if fix.readded:
                parts.append(f"{len(fix.readded)} element(s) deleted outside the agent: "
                             + _sample(fix.readded))
            if fix.delete:
                parts.append(f"{len(fix.delete)} element(s) added outside the agent: "
                             + _sample(fix.delete))
            found = f"set {set_name}: " + "; ".join(parts)
            kind = ("isolation_lifted" if set_name == "iso_wan" and fix.add
                    else "element_deleted" if fix.add else "element_added")
            self._repair(kind, found, started, _elements_call(self.writer, set_name, fix, found))
            if set_name in want.KEEP_ADDED and fix.readded:
                self._recheck(set_name, fix.readded, gen)

    def _recheck(self, set_name: str, values: list[str], gen: tuple[tuple[int, int], ...]
                 ) -> None:
        """A cut re-added on an intent that changed meanwhile (a restore committed between
        the decision and the repair) is taken back: kept, it would pass for break-glass."""
        try:
            with kernel_lock(self.store, LOCK_WAIT):
                if want.generation(self.store) == gen:
                    return
                intent = isolation.load(self.store)
        except StateError:
            return
        now = isolation.now()
        wanted = self.desired.small(intent.live(now), now).sets.get(set_name, {})
        stale = [v for v in values if v not in wanted]
        if stale:
            log.info("kernel watcher: %s no longer wanted in %s (the intent changed during "
                     "the repair): taken back", ", ".join(stale), set_name)
            try:
                self.writer.repair_elements(set_name, [], stale, "the intent changed")
            except AgentError as exc:
                log.error("kernel watcher: cannot take back %s: %s", ", ".join(stale), exc)

    def full(self, kind: str, found: str, started: float) -> None:
        """A full reload through the writer, with the monitor paused: the reload's own flood of
        element events would triple its time and tell us nothing."""
        now = time.monotonic()
        if now < self._retry_at:
            return
        self._fulls = [t for t in self._fulls if now - t < 60] + [now]
        if len(self._fulls) > FULLS_PER_MINUTE:  # something undoes every repair: back off
            self._retry_at = now + min(BACKOFF[0] * 2 ** (len(self._fulls) - 5), BACKOFF[1])
        self.poll_now = True  # the facts after the repair, at once
        if self.monitor is not None:
            self.monitor.pause()
        try:
            self._repair(kind, found, started, lambda: self.writer.repair(found))
        finally:
            if self.monitor is not None:
                self.monitor.resume()
            with self.cond:  # what the monitor said before the reload is moot now
                self._events, self._lost = [], False

    def _repair(self, kind: str, found: str, started: float, do: Callable[[], str]) -> None:
        try:
            done = do()
        except AgentError as exc:
            self._failures += 1
            delay = min(BACKOFF[0] * 2 ** (self._failures - 1), BACKOFF[1])
            self._retry_at = time.monotonic() + delay
            self.on_repair(Repair(kind, found, f"repair failed ({exc.what}); retrying in "
                                  f"{delay:.0f} s", False, time.monotonic() - started))
            return
        self._failures = 0
        self.on_repair(Repair(kind, found, done, True, time.monotonic() - started))

    def _facts(self, facts: KernelFacts) -> None:
        changed = facts.key() != self.facts.key()
        self.facts = facts
        if changed:
            self.on_facts(facts)


def _elements_call(writer: TableWriter, set_name: str, fix: want.Fix, reason: str
                   ) -> Callable[[], str]:
    return lambda: writer.repair_elements(set_name, fix.add, fix.delete, reason)


def facts_with(facts: KernelFacts, problem: str) -> KernelFacts:
    return KernelFacts(facts.readable, facts.table_present, facts.in_sync, facts.isolation,
                       facts.intent_active, problem)


def _sample(values: list[str], count: int = 5) -> str:
    shown = ", ".join(values[:count])
    return shown + (f" and {len(values) - count} more" if len(values) > count else "")
