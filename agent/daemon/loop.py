"""`blocklist-agent run`: keep the gateway protected, unattended, for months.

The loop is deliberately plain: wake up, do what is due (reload, refresh, metrics), tell systemd,
sleep until the next due time. The policy (when is what due) is in agent/daemon/schedule.py; the
work is agent/pipeline.run, exactly what `blocklist-agent sync` does, told which feeds are due.

Promises, in the order an on-call person cares about them:
- enforcement is never removed by the daemon: not on SIGTERM, not on a crash, not on a bad
  configuration. Stopping leaves the table and the zone as they are: the gateway fails closed;
- at start-up the last good state is enforced from the state directory (no network needed)
  before READY=1 is sent, then every feed is refreshed;
- a failed refresh or apply is retried with backoff and reported (journal, STATUS=, status.json,
  metrics); the daemon itself keeps running;
- SIGHUP, or an edit of the configuration file, reloads it; a configuration that does not load
  is refused and the running one kept; a change in local_dir (allow/deny) is applied at once;
- SIGTERM lets the step in progress (a download, an apply) finish, starts no other, exits 0;
- a sync runs in a worker thread, the watchdog fed (agent.daemon.worker); one daemon a state_dir.
- with nftables, what others do to the table (flushed ruleset, deleted element, emptied
  iso_wan) is repaired within a second or so by agent.daemon.kernelwatch (its own thread);
  STATUS= and the metrics say what the kernel holds, not what was recorded.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent import config as config_mod
from agent import hostinfo, isolation, lifelines, overrides, pipeline
from agent.backends import killswitch
from agent.backends.base import Backend
from agent.backends.registry import backends_for
from agent.config import Config
from agent.daemon import memory, report
from agent.daemon import schedule as sched
from agent.daemon.fetcher import Interrupted, Stoppable
from agent.daemon.kernelfacts import KernelFacts, Repair
from agent.daemon.kernelwatch import KernelWatcher, start_kernel_watch
from agent.daemon.notify import Journal, notify, watchdog_interval
from agent.daemon.watch import Pending, start_watcher, stop_watcher
from agent.daemon.worker import watched_sync
from agent.errors import AgentError, StateError
from agent.fetch import Fetcher, HttpFetcher
from agent.guards import Policy
from agent.isolation.resolve import refresh as refresh_allow_names
from agent.pipeline import SyncResult
from agent.psl import default as default_psl
from agent.state import StateStore
from agent.util.timefmt import utc_now

log = logging.getLogger(__name__)
BUSY_RETRY = 5.0  # seconds before trying again when another command holds the state lock
METRICS_EVERY = 60.0  # seconds: ages in the textfile move even when nothing is synced


class Daemon:
    config: Config
    backends: list[Backend]
    store: StateStore
    schedule: sched.Schedule

    def __init__(
        self,
        config_path: str,
        *,
        fetcher: Fetcher | None = None,
        backends: Callable[[Config], Sequence[Backend]] = backends_for,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        journal: Journal | None = None,
        own_addresses: Callable[[], list[str]] | None = None,
        facts: Callable[[Config, StateStore], lifelines.Facts] | None = None,
        watch: bool = True,
        kernel_watch: bool = True,
    ) -> None:
        self.config_path = config_path
        self.fetcher = fetcher or HttpFetcher()
        self.make_backends = backends
        self.clock = clock
        self.rand = rand
        self.journal = journal or Journal()
        self.own_addresses = own_addresses or hostinfo.local_addresses
        self.facts = facts or lifelines.gather
        self.watch = watch
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.reload_requested = False
        self.pending = Pending()
        self.ready = False
        self.watchdog = watchdog_interval()
        self.last_ping = float("-inf")
        self.last_metrics = float("-inf")
        self.metrics_error = ""
        self.watcher: Any = None
        self.instance: Any = None  # the daemon lock, held while running
        self.reloads = 0  # configuration generation: a sync started before a reload is old
        self.kernel_watch = kernel_watch
        self.kernel: KernelWatcher | None = None
        self.kernel_news = threading.Event()  # the watcher saw or repaired something
        self.repairs: Counter[str] = Counter()
        self.last_result: SyncResult | None = None

    # -- start, loop, stop --------------------------------------------------------------------
    def start(self) -> None:
        """Load the configuration (ConfigError if it is wrong) and enforce the last good state."""
        self.status("starting: loading the configuration")
        self.config, self.backends = self._load()
        self.store = StateStore(self.config.state_dir)
        self.store.ensure()
        self.instance = self.store.hold_daemon_lock()
        self.journal.event(logging.INFO, f"starting with {self.config.path} "
                           f"({len(self.config.feeds)} feeds)", ACTION="start")
        self._rearm_watcher()
        self.schedule = sched.initial(self._feed_intervals(), self.clock())
        self.status("starting: enforcing the last good state")
        self.sync(frozenset())
        self._rearm_kernel_watch()

    def step(self) -> float:
        """Do whatever is due now; return how long the loop may sleep."""
        self.ping()
        self._isolation_deadlines()
        if self.kernel_news.is_set():
            self.kernel_news.clear()
            self._say_status()
            self.write_metrics()
        now = self.clock()
        if self.reload_requested:
            self.reload_requested = False
            self.reload("SIGHUP", forced=True)
        config_changed, local_changed = self.pending.take(now)
        if config_changed:
            self.reload(f"{self.config_path} changed", forced=False)
        if local_changed:
            self.journal.event(logging.INFO, f"{self.config.local_dir} changed: syncing now",
                               ACTION="local-change")
            self._rearm_watcher()
            self.schedule = sched.retry_now(self.schedule, now)
        refresh = sched.due(self.schedule, self.clock())
        if refresh is not None and not self.stopping.is_set():
            self.sync(refresh)
        if self.clock() - self.last_metrics >= METRICS_EVERY:
            self.write_metrics()
        return self._sleep_time()

    def run(self) -> int:
        """The service: signals, start, loop until SIGTERM. Returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            self.start()
            while not self.stopping.is_set():
                timeout = self.step()
                if self.stopping.is_set():
                    break
                self.wake.wait(timeout)
                self.wake.clear()
        except Interrupted:
            pass
        finally:
            self.close()
        return 0

    def close(self) -> None:
        """Stop watching; enforcement stays exactly as it is (fail closed)."""
        notify("STOPPING=1", "STATUS=stopped: enforcement left in place")
        if self.kernel is not None:
            self.kernel.stop()
            self.kernel = None
        if self.watcher is not None:
            stop_watcher(self.watcher)
            self.watcher = None
        if self.instance is not None:
            self.instance.close()  # releases the daemon lock
            self.instance = None
        self.journal.event(logging.INFO, "stopping; the nftables table and the RPZ zone stay "
                           "enforced", ACTION="stop")

    def _on_stop(self, signum: int, _frame: object) -> None:
        self.stopping.set()
        self.wake.set()

    def _on_hup(self, signum: int, _frame: object) -> None:
        self.reload_requested = True
        self.wake.set()

    def ping(self) -> None:
        """WATCHDOG=1 every quarter of WatchdogSec; only the main loop (and the sync it runs)
        calls this, so a hung loop is what systemd's watchdog catches."""
        if self.watchdog is not None and self.clock() - self.last_ping >= self.watchdog / 2:
            notify("WATCHDOG=1")
            self.last_ping = self.clock()

    def status(self, text: str) -> None:
        notify(f"STATUS={text}")

    def _sleep_time(self) -> float:
        now = self.clock()
        times = [self.last_metrics + METRICS_EVERY]
        wakeup = sched.next_wakeup(self.schedule)
        if wakeup is not None:
            times.append(wakeup)
        if self.watchdog is not None:
            times.append(self.last_ping + self.watchdog / 2)
        times += self.pending.deadlines()
        return max(0.0, min(times) - now)

    # -- configuration ------------------------------------------------------------------------
    def _load(self) -> tuple[Config, list[Backend]]:
        config = config_mod.load(self.config_path)
        backends = list(self.make_backends(config))
        Policy.from_config(config, psl=default_psl())  # refuse bad guards before running them
        return config, backends

    def _feed_intervals(self) -> list[tuple[str, float]]:
        return [(f.name, float(f.refresh)) for f in self.config.feeds]

    def reload(self, why: str, *, forced: bool) -> None:
        """Load the configuration again; keep the running one if the new one is wrong."""
        self._reload_notify("RELOADING=1", f"STATUS=reloading the configuration ({why})")
        try:
            config, backends = self._load()
        except AgentError as exc:
            self.journal.event(logging.ERROR, f"configuration reload refused ({why}); still "
                               f"running with the previous configuration: {exc}",
                               ACTION="reload", RESULT="refused")
            self._reload_notify("READY=1", "STATUS=configuration reload REFUSED, running with "
                                f"the previous one: {exc.what}")
            return
        if config == self.config and not forced:
            self._reload_notify("READY=1")
            return
        self.config, self.backends = config, backends
        self.reloads += 1
        self.store = StateStore(config.state_dir)
        self.schedule = sched.initial(self._feed_intervals(), self.clock())
        self._rearm_watcher()
        self._rearm_kernel_watch()
        self.journal.event(logging.INFO, f"configuration reloaded ({why}): "
                           f"{len(config.feeds)} feeds, refreshing them now",
                           ACTION="reload", RESULT="ok")
        self._reload_notify("READY=1")

    def _reload_notify(self, *assignments: str) -> None:
        """RELOADING=1 / READY=1 only once started: READY=1 means "the last good state is
        enforced", which a reload before that must not claim."""
        if not self.ready:
            assignments = tuple(a for a in assignments if a.startswith("STATUS="))
        if assignments:
            notify(*assignments)

    # -- one sync -----------------------------------------------------------------------------
    def sync(self, refresh: frozenset[str]) -> None:
        """One pipeline run refreshing `refresh` (the other feeds from their last good copy)."""
        config, store, reloads = self.config, self.store, self.reloads
        self.status("syncing: " + (", ".join(sorted(refresh)) if refresh
                                   else "re-applying the last good state"))
        try:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(store.lock(wait=False))
                except StateError as exc:
                    log.info("sync postponed %.0f s: %s", BUSY_RETRY, exc.what)
                    self.schedule = sched.busy(self.schedule, self.clock(), BUSY_RETRY)
                    return
                facts = self.facts(config, store)
                now = utc_now()
                refresh_allow_names(config, store, int(now.timestamp()))
                backends = self.backends  # as now: a reload may replace them meanwhile
                result = memory.slim(watched_sync(lambda cancel: pipeline.run(
                    config, fetcher=Stoppable(self.fetcher, self._before_get), store=store,
                    local=overrides.load(config.local_dir, now=int(now.timestamp())),
                    backends=backends, own_addresses=self.own_addresses(), facts=facts,
                    psl=default_psl(), refresh=refresh, now=now, progress=self._progress,
                    cancel=cancel), clock=self.clock, sync_timeout=config.sync_timeout,
                    ping=self.ping, cut=lambda: self.reload_requested or self.pending.dirty(),
                    also=self._isolation_deadlines))  # the values are not kept (memory.py)
        except Interrupted:
            raise
        except Exception as exc:  # a bug or an unreadable state dir: report, back off, go on
            log.exception("sync failed: %s", exc)
            self.journal.event(logging.ERROR, f"sync failed: {exc}", ACTION="sync",
                               RESULT="error")
            self.schedule = sched.after_sync(self.schedule, dict.fromkeys(refresh, False),
                                             apply_failed=True, now=self.clock(),
                                             rand=self.rand())
            self.status(f"degraded: sync failed ({exc}); retrying; the last applied state stays "
                        "enforced")
            return
        if reloads == self.reloads:  # else the new configuration's schedule stands as it is
            self.schedule = sched.after_errors(
                self.schedule, refresh, {o.name: o.error for o in result.feeds},
                apply_failed=result.error is not None, now=self.clock(), rand=self.rand())
        report.journal_sync(self.journal, result)
        self.write_metrics()
        if not self.ready and result.error is None:
            self.ready = True
            notify("READY=1")
        self.last_result = result
        memory.release()
        self._say_status()

    def _say_status(self) -> None:
        """STATUS= after the last sync, with what the kernel holds first (when watched)."""
        if self.last_result is None:
            return
        wakeup = sched.next_wakeup(self.schedule)
        self.status(report.summary(self.last_result,
                                   None if wakeup is None else wakeup - self.clock(),
                                   self._kernel_facts(), self.config.firewall.table))

    def _before_get(self) -> None:
        if self.stopping.is_set():
            raise Interrupted
        self.ping()

    def _progress(self, message: str) -> None:
        self.ping()
        self.status(f"syncing: {message}")

    # -- metrics and file watching ------------------------------------------------------------
    def write_metrics(self) -> None:
        """The textfile; best effort: metrics must never stop the enforcement."""
        self.last_metrics = self.clock()
        path = self.config.metrics_file
        if not path:
            return
        try:
            kernel = self._kernel_facts()
            report.write_metrics(path, self.config, self.store, self.backends, time.time(),
                                 *((kernel, self.repairs) if kernel else ()))
            self.metrics_error = ""
        except Exception as exc:  # reported below, once per distinct problem
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            message = f"cannot write the metrics file {path}: {detail}"
            if message != self.metrics_error:  # said once, not every minute
                log.warning("%s (check metrics_file and the unit's ReadWritePaths=)", message)
                self.metrics_error = message

    def _isolation_deadlines(self) -> None:
        """A `--for` deadline the kernel honoured (its element timeout) is recorded once; a
        record of another boot is re-based on this boot's clock. Never from the wall clock."""
        if self.config.firewall.backend != "nftables":
            return
        stored = isolation.load(self.store)
        if not (stored.active or stored.peers):
            return
        try:
            state = killswitch.reconcile(self.config, self.store, isolation.now())
        except AgentError as exc:
            log.error("cannot record the isolation whose deadline passed: %s", exc)
            return
        if stored.active and not state.active:
            self.journal.event(logging.WARNING, "isolation lifted: its --for deadline passed",
                               ACTION="restore", BY="deadline")

    def _rearm_watcher(self) -> None:
        if not self.watch:
            return
        if self.watcher is not None:
            stop_watcher(self.watcher)
        self.watcher = start_watcher(Path(self.config_path), Path(self.config.local_dir),
                                     self._on_file_change)

    def _rearm_kernel_watch(self) -> None:
        """The kernel watcher for the nftables firewall, on the current configuration."""
        if self.kernel is not None:
            self.kernel.stop()
        self.kernel = start_kernel_watch(self.config, self.store, self.backends,
                                         on_repair=self._on_repair, on_news=self._kernel_news
                                         ) if self.kernel_watch else None

    def _kernel_facts(self) -> KernelFacts | None:
        """What the watcher last saw of the kernel; None before its first look (or unwatched)."""
        facts = self.kernel.facts if self.kernel is not None else None
        return facts if facts is not None and facts.known else None

    def _on_repair(self, repair: Repair) -> None:
        """From the watcher's thread: journal now; STATUS= and metrics from the loop."""
        self.repairs[repair.kind] += 1
        report.journal_repair(self.journal, repair)
        self._kernel_news()

    def _kernel_news(self) -> None:
        self.kernel_news.set()
        self.wake.set()

    def _on_file_change(self, what: str) -> None:
        self.pending.note(what, self.clock())
        self.wake.set()

