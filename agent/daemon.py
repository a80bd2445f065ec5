"""`blocklist-agent run`: keep the gateway protected, unattended, for months.

The loop is deliberately plain: wake up, do what is due (reload, refresh, metrics), tell systemd,
sleep until the next due time. The policy (when is what due) is in agent/schedule.py; the work
is agent/pipeline.run, exactly what `blocklist-agent sync` does.

Promises, in the order an on-call person cares about them:
- enforcement is never removed by the daemon: not on SIGTERM, not on a crash, not on a bad
  configuration. Stopping leaves the table and the zone as they are: the gateway fails closed;
- at start-up the last good state is enforced from the state directory (no network needed)
  before READY=1 is sent, then every feed is refreshed;
- a failed refresh or apply is retried with backoff and reported (journal, STATUS=, status.json,
  metrics); the daemon itself keeps running;
- SIGHUP, or an edit of the configuration file, reloads it; a configuration that does not load
  is refused and the running one kept; a change in local_dir (allow/deny) is applied at once;
- SIGTERM lets the step in progress finish (a download under way, or an apply), starts no new
  download, and exits 0.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import config as config_mod
from agent import hostinfo, metrics, pipeline
from agent import schedule as sched
from agent.backends.base import Backend
from agent.backends.registry import backends_for
from agent.config import Config
from agent.errors import AgentError, FetchError, StateError
from agent.fetch import Fetcher, HttpFetcher, Response
from agent.guards import Policy
from agent.notify import Journal, notify, watchdog_interval
from agent.psl import default as public_suffixes
from agent.state import StateStore

log = logging.getLogger(__name__)
DEBOUNCE = 1.0  # seconds of quiet after a file change before acting on it (editors write twice)
BUSY_RETRY = 5.0  # seconds before trying again when another command holds the state lock
METRICS_EVERY = 60.0  # seconds: ages in the textfile move even when nothing is synced
ATTEMPT_KEYS = ("status", "error", "failures", "last_attempt", "last_success")


class Interrupted(Exception):
    """SIGTERM arrived during a sync: stop before the next download (nothing applied yet)."""


class ScheduledFetcher(Fetcher):
    """The real fetcher for the feeds due now; the others are answered without any network.

    pipeline.run processes every configured feed (the merge needs them all). A feed that is not
    due gets "not modified", so its last good copy is used; a feed that is not due and has no
    copy yet (waiting for its backoff) gets a FetchError saying when it is retried.
    """

    def __init__(self, inner: Fetcher, held: Mapping[str, str | None],
                 before_get: Callable[[], None]) -> None:
        self.inner = inner
        self.held = held  # URL -> None (answer 304) or the message of the pending error
        self.before_get = before_get

    def get(self, url: str, *, max_size: int, timeout: float, etag: str | None = None,
            last_modified: str | None = None, ca_file: str | None = None) -> Response:
        self.before_get()
        if url in self.held:
            pending = self.held[url]
            if pending is None:
                return Response(url, 304, b"", etag, last_modified)
            raise FetchError(pending, where=url, reason="pending",
                             hint="the daemon retries it by itself; see `blocklist-agent status`")
        return self.inner.get(url, max_size=max_size, timeout=timeout, etag=etag,
                              last_modified=last_modified, ca_file=ca_file)


def keep_attempts(before: Mapping[str, Any], after: dict[str, Any],
                  skipped: Sequence[str]) -> dict[str, Any]:
    """status.json after a sync, with the last *real* attempt of every feed that was not due.

    The pipeline records every feed as attempted; for a feed answered from its cache that would
    erase the error of its last real attempt (a feed in backoff would look healthy).
    """
    feeds = dict(after.get("feeds") or {})
    old_feeds = before.get("feeds") or {}
    for name in skipped:
        if name not in feeds:
            continue
        old = old_feeds.get(name)
        if old is None and feeds[name].get("error") is not None:
            del feeds[name]  # never attempted: `status` says "never synced"
            continue
        base = old or {"status": "unchanged", "failures": 0}
        feeds[name] = {**feeds[name], **{k: base.get(k) for k in ATTEMPT_KEYS}}
    return {**after, "feeds": feeds}


class _QuietPending(logging.Filter):
    """Drop the pipeline's "feed refused" line for a feed only waiting for its first download."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(a, FetchError) and a.reason == "pending" for a in args)


_QUIET = _QuietPending()


@dataclass
class _Pending:
    """File changes seen by the watcher thread, acted upon by the loop after DEBOUNCE."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    config_at: float | None = None
    local_at: float | None = None


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
        watch: bool = True,
    ) -> None:
        self.config_path = config_path
        self.fetcher = fetcher or HttpFetcher()
        self.make_backends = backends
        self.clock = clock
        self.rand = rand
        self.journal = journal or Journal()
        self.own_addresses = own_addresses or (
            lambda: hostinfo.local_addresses() + hostinfo.resolvers())
        self.watch = watch
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.reload_requested = False
        self.pending = _Pending()
        self.ready = False
        self.watchdog = watchdog_interval()
        self.last_ping = float("-inf")
        self.last_metrics = float("-inf")
        self.metrics_error = ""
        self.watcher: Any = None

    # -- start, loop, stop --------------------------------------------------------------------
    def start(self) -> None:
        """Load the configuration (ConfigError if it is wrong) and enforce the last good state."""
        self.status("starting: loading the configuration")
        logging.getLogger(pipeline.__name__).addFilter(_QUIET)  # once: filters are a set
        self.config, self.backends = self._load()
        self.store = StateStore(self.config.state_dir)
        self.store.ensure()
        self.journal.event(logging.INFO, f"starting with {self.config.path} "
                           f"({len(self.config.feeds)} feeds)", ACTION="start")
        self._rearm_watcher()
        self.schedule = sched.initial(self._feed_intervals(), self.clock())
        self.status("starting: enforcing the last good state")
        self.sync(frozenset())

    def step(self) -> float:
        """Do whatever is due now; return how long the loop may sleep."""
        self.ping()
        self._isolation_deadlines()
        now = self.clock()
        if self.reload_requested:
            self.reload_requested = False
            self.reload("SIGHUP", forced=True)
        with self.pending.lock:
            config_at, local_at = self.pending.config_at, self.pending.local_at
            if config_at is not None and now - config_at >= DEBOUNCE:
                self.pending.config_at = None
            if local_at is not None and now - local_at >= DEBOUNCE:
                self.pending.local_at = None
        if config_at is not None and now - config_at >= DEBOUNCE:
            self.reload(f"{self.config_path} changed", forced=False)
        if local_at is not None and now - local_at >= DEBOUNCE:
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
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stop()
                self.watcher.join(timeout=5)
            self.watcher = None
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
        with self.pending.lock:
            times += [t + DEBOUNCE for t in (self.pending.config_at, self.pending.local_at)
                      if t is not None]
        return max(0.0, min(times) - now)

    # -- configuration ------------------------------------------------------------------------
    def _load(self) -> tuple[Config, list[Backend]]:
        config = config_mod.load(self.config_path)
        backends = list(self.make_backends(config))
        Policy.from_config(config, psl=public_suffixes())
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
        self.store = StateStore(config.state_dir)
        self.schedule = sched.initial(self._feed_intervals(), self.clock())
        self._rearm_watcher()
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
        config, store = self.config, self.store
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
                before = store.load_status()
                fetcher = ScheduledFetcher(self.fetcher, self._held(refresh), self._before_get)
                result = pipeline.run(config, fetcher=fetcher, store=store,
                                      backends=self.backends, own_addresses=self.own_addresses(),
                                      progress=self._progress)
                skipped = [f.name for f in config.feeds if f.name not in refresh]
                store.save_status(keep_attempts(before, store.load_status(), skipped))
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
        outcomes = {o.name: o for o in result.feeds}
        self.schedule = sched.after_sync(
            self.schedule, {n: outcomes[n].error is None for n in refresh if n in outcomes},
            apply_failed=result.error is not None, now=self.clock(), rand=self.rand())
        self._report(result, refresh)
        self.write_metrics()
        if not self.ready and result.error is None:
            self.ready = True
            notify("READY=1")
        self.status(self._summary(result))

    def _held(self, refresh: frozenset[str]) -> dict[str, str | None]:
        """URL -> answer for the feeds not refreshed in this sync (see ScheduledFetcher)."""
        due_urls = {u for f in self.config.feeds if f.name in refresh for u in (f.url, *f.mirrors)}
        held: dict[str, str | None] = {}
        for feed in self.config.feeds:
            if feed.name in refresh:
                continue
            pending: str | None = None
            if self.store.load_feed(feed.name) is None:
                timer = self.schedule.feeds.get(feed.name)
                wait = max(0.0, timer.due - self.clock()) if timer else 0.0
                pending = (f"feed {feed.name!r} has no good copy yet; next download attempt in "
                           f"{_human(wait)}")
            for url in (feed.url, *feed.mirrors):
                if url not in due_urls:
                    held[url] = pending
        return held

    def _before_get(self) -> None:
        if self.stopping.is_set():
            raise Interrupted
        self.ping()

    def _progress(self, message: str) -> None:
        self.ping()
        self.status(f"syncing: {message}")

    def _report(self, result: pipeline.SyncResult, refresh: frozenset[str]) -> None:
        for o in result.feeds:
            if o.name not in refresh:
                continue
            level = logging.INFO if o.error is None else logging.ERROR
            text = f"feed {o.name}: {o.status}"
            if o.record is not None:
                text += f", serial {o.record.serial}"
            if o.error is not None:
                text += f": {o.error}"
            self.journal.event(level, text, ACTION="refresh", FEED=o.name, RESULT=o.status,
                               SERIAL=o.record.serial if o.record else None,
                               REASON=o.error.reason if o.error else None,
                               ACCEPTED=len(o.indicators))
        level = {"ok": logging.INFO, "partial": logging.WARNING,
                 "held": logging.WARNING}.get(result.result, logging.ERROR)
        text = f"sync {result.result}: {result.blocklist.total} entries"
        if not refresh:  # start-up, local change, retry: nothing downloaded
            level = logging.ERROR if result.error else logging.INFO
            text = f"last good state re-applied: {result.blocklist.total} entries"
        if result.plan.held:
            text += f"; plan HELD: {result.plan.held}"
        if result.error is not None:
            text += f"; apply failed, the previous state stays enforced: {result.error}"
        self.journal.event(level, text, ACTION="sync", RESULT=result.result,
                           APPLIED=int(result.applied), ENFORCED=result.blocklist.total,
                           DURATION=round(result.timings.get("total", 0.0), 3))

    def _summary(self, result: pipeline.SyncResult) -> str:
        failing = sorted(o.name for o in result.feeds if o.error is not None)
        if result.error is not None:
            head = f"degraded: apply failed ({result.error.what}); the previous state stays " \
                   "enforced, retrying"
        elif result.plan.held:
            head = "plan HELD (guards.max_change): check it, then `blocklist-agent sync --force`"
        else:
            head = f"enforcing {result.blocklist.total} entries"
        if failing:
            head += f"; feeds failing: {', '.join(failing)}"
        wakeup = sched.next_wakeup(self.schedule)
        if wakeup is not None:
            head += f"; next refresh in {_human(wakeup - self.clock())}"
        return head

    # -- metrics and file watching ------------------------------------------------------------
    def write_metrics(self) -> None:
        """The textfile; best effort: metrics must never stop the enforcement."""
        self.last_metrics = self.clock()
        path = self.config.metrics_file
        if not path:
            return
        try:
            status = self.store.load_status()
            applied = self.store.root / "applied.json"
            applied_at = applied.stat().st_mtime if applied.exists() else None
            now = time.time()
            text = metrics.render(status, enforced=status.get("enforced") or {},
                                  applied_at=applied_at, now=now,
                                  isolation=self._isolation(int(now)), **self._backend_metrics())
            metrics.write(path, text)
            self.metrics_error = ""
        except Exception as exc:  # reported below, once per distinct problem
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            message = f"cannot write the metrics file {path}: {detail}"
            if message != self.metrics_error:  # said once, not every minute
                log.warning("%s (check metrics_file and the unit's ReadWritePaths=)", message)
                self.metrics_error = message

    def _isolation_deadlines(self) -> None:
        """A `--for` deadline that passed is recorded and the kernel re-checked (after a
        reboot, enforced.nft restored the isolation with the timeout it had when written)."""
        if self.config.firewall.backend != "nftables":
            return
        from agent import isolation, killswitch

        now = isolation.now()
        stored = isolation.load(self.store)
        if stored.live(now) == stored:
            return
        try:
            killswitch.reconcile(self.config, self.store, now)
        except AgentError as exc:
            log.error("cannot lift the isolation whose deadline passed: %s", exc)
            return
        self.journal.event(logging.WARNING, "isolation lifted: its --for deadline passed",
                           ACTION="restore", BY="deadline")

    def _isolation(self, now: int) -> dict[str, Any] | None:
        """The kill switch's live state (isolation.json), None if it cannot be read."""
        try:
            from agent import isolation
        except ImportError:
            return None
        return isolation.load(self.store).live(now).to_json()

    def _backend_metrics(self) -> dict[str, Any]:
        """Blocked-packet counters and offenders, from the backends that count them (nftables:
        `counters(table)`, `offenders(table)`); a backend without them, or failing, is skipped."""
        out: dict[str, Any] = {}
        for backend in self.backends:
            for name in ("counters", "offenders"):
                method = getattr(backend, name, None)
                if not callable(method) or name in out:
                    continue
                args = (self.config.firewall.table,) if inspect.signature(method).parameters \
                    else ()
                try:
                    out[name] = method(*args)
                except Exception as exc:  # a missing table, nft not there, ...
                    log.debug("no %s from %s: %s", name, backend.name, exc)
        return out

    def _rearm_watcher(self) -> None:
        if not self.watch:
            return
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stop()
                self.watcher.join(timeout=5)
        self.watcher = _watch(Path(self.config_path), Path(self.config.local_dir),
                              self._on_file_change)

    def _on_file_change(self, what: str) -> None:
        with self.pending.lock:
            if what == "config":
                self.pending.config_at = self.clock()
            else:
                self.pending.local_at = self.clock()
        self.wake.set()


def _watch(config_path: Path, local_dir: Path, changed: Callable[[str], None]) -> Any:
    """An inotify watcher (python3-watchdog) on the configuration file and on local_dir."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    make_observer: Any = Observer  # watchdog's constructors are untyped

    config_path = config_path.absolute()
    local_dir = local_dir.absolute()

    class Handler(FileSystemEventHandler):  # type: ignore[misc]
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed", "closed_no_write"):
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if not raw:
                    continue
                path = Path(os.fsdecode(raw))
                if path == config_path:
                    changed("config")
                elif path == local_dir or local_dir in path.parents:
                    changed("local")

    observer: Any = make_observer()
    handler = Handler()
    watched: set[Path] = set()
    for directory, recursive in ((config_path.parent, False), (local_dir.parent, False),
                                 (local_dir, True)):
        if directory.is_dir() and directory not in watched:
            observer.schedule(handler, str(directory), recursive=recursive)
            watched.add(directory)
    observer.daemon = True
    observer.start()
    return observer


def _human(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"
