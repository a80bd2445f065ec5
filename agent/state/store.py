"""The state directory (docs/design.md §12): the agent's memory of what it accepted and enforces.

StateStore (with the CachedFeed handles it returns) is the only code that reads or writes a
file in `state_dir`; everyone else asks it by name (`load_applied`, `save_isolation`, …).
Every write is temp + fsync + rename (agent.util.fsutil), so a power cut leaves the old or the
new file, never a mix; a feed generation is switched by renaming a symlink, so the same holds
for a feed's several files.

What each file holds, who writes it when, and what a crash leaves is docs/design.md §12's
table; here, where each lives and which module knows its shape:

    lock, kernel.lock, daemon.lock, local.lock    locks.py (flock; the holder's pid inside)
    status.json, history.jsonl                    status.py; appended, fsynced per line
    applied.json, applied.base/SHA.json           applied.py: the difference from a base
    cache/NAME/KEY.digest                         cache.py: validated results, never trusted
    isolation.json, allow-names.json, lifelines.json, nftables.json, dns.json   health.py
    enforced.nft, isolation.nft, break-glass.nft  the one writer's boot files (nft -c first)
    boot/*.nft                                    bootparts.py: enforced.nft's parts
    feeds/NAME/current -> gen-SERIAL-N/           feeds.py: the last good copy, its record,
                                                  index.tsv and rejects.tsv (for `why`)
    damaged/                                      health.py: files that failed their check
    .NAME.blocklist-agent-PID.*.tmp               a write in progress (swept once PID is gone)

Losing the directory loses the offline start and the rollback protection (the serials last
accepted); the next sync then fetches every feed and reloads every enforcement point whole.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agent.errors import StateError
from agent.merge import Blocklist
from agent.state import applied, health, locks
from agent.state.bootparts import BootParts
from agent.state.feeds import INDEX, RECORD, REJECTS, CachedFeed, FeedRecord
from agent.state.status import after_sync
from agent.util.fsutil import atomic_write, fsync_dir, sweep, tmp_name
from agent.util.timefmt import iso_z

if TYPE_CHECKING:
    from agent.state import cache

log = logging.getLogger(__name__)
LOCK = "lock"
STATUS = "status.json"
APPLIED = applied.APPLIED
HISTORY = "history.jsonl"
ISOLATION = "isolation.json"
ALLOW_NAMES = "allow-names.json"
ENFORCED_NFT = "enforced.nft"
BOOT_PARTS = "boot"
ISOLATION_NFT = "isolation.nft"
KERNEL_LOCK = "kernel.lock"
DAEMON_LOCK = "daemon.lock"
LOCAL_LOCK = "local.lock"
BREAK_GLASS_NFT = "break-glass.nft"
NFT_RECORD = "nftables.json"
DNS_RECORD = "dns.json"
LIFELINES = "lifelines.json"
FEEDS = "feeds"


class StateStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir)
        self.quarantine = health.Quarantine(self.root)
        self.boot_parts = BootParts(self.root / BOOT_PARTS)  # enforced.nft's parts

    @functools.cached_property
    def digests(self) -> cache.Digests:
        """The feed copies' validated results (imported when a sync needs them: `isolate` at
        3 a.m. does not wait for the parsers' modules)."""
        from agent.state import cache as digest_cache
        return digest_cache.Digests(self.root)

    # -- plumbing -------------------------------------------------------------------------
    def ensure(self) -> None:
        try:
            (self.root / FEEDS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory: {exc.strerror}", where=str(self.root),
                hint="check state_dir in the configuration and that the agent runs as root",
            ) from None

    @contextlib.contextmanager
    def lock(self, wait: bool = True) -> Iterator[None]:
        """An exclusive lock: one sync at a time, whoever starts it."""
        self.ensure()
        with locks.exclusive(self.root / LOCK, wait=wait,
                             busy="another blocklist-agent command is changing the state right "
                             "now", hint="wait for it to finish and try again"):
            yield

    @contextlib.contextmanager
    def kernel_lock(self, timeout: float = 30.0) -> Iterator[None]:
        """The one writer's lock around every change of the nftables table and its records."""
        self.ensure()
        with locks.with_timeout(self.root / KERNEL_LOCK, timeout):
            yield

    @contextlib.contextmanager
    def local_lock(self) -> Iterator[None]:
        """One edit of the command-line override files at a time (waits: edits are short)."""
        self.ensure()
        with locks.exclusive(self.root / LOCAL_LOCK, wait=True, busy="", hint=""):
            yield

    def hold_daemon_lock(self) -> IO[bytes]:
        """The running daemon's lock (StateError naming the other daemon if one runs)."""
        self.ensure()
        return locks.hold_instance(self.root / DAEMON_LOCK)

    def _read_json(self, name: str, check: health.Check = health.check_mapping) -> Any:
        """The document, or None when it is missing or damaged (then moved aside)."""
        path = self.root / name
        doc, problem = health.read_checked(path, check)
        if problem is not None:
            self.quarantine.set_aside(path, problem)
            return None
        return doc

    def _read_record(self, name: str) -> dict[str, Any]:
        """A file the agent can do without (rebuilt, or a safe default): {} if unusable."""
        data = self._read_json(name)
        return data if isinstance(data, dict) else {}

    def set_aside(self, name: str, why: str) -> None:
        """A file whose content its reader refused (isolation.json of a wrong shape)."""
        path = self.root / name
        if path.exists():
            self.quarantine.set_aside(path, why)

    def repairs(self) -> list[dict[str, str]]:
        """The damaged files moved aside since the last call, for the sync result and status."""
        return self.quarantine.take()

    def sweep(self, elsewhere: Iterable[tuple[Path, str]] = ()) -> list[Path]:
        """Remove the temp files and stray generations that crashed runs left (in state_dir,
        and in `elsewhere`: (directory, name prefix) of the agent's files in shared folders).
        Called under the sync lock, so no live writer of a generation can be running."""
        removed = sweep([self.root], recursive=True)
        for directory, prefix in elsewhere:
            removed += sweep([directory], prefix=prefix)
        return removed + health.stray_generations(self.root / FEEDS)

    def _write_json(self, name: str, data: Any) -> None:
        self.ensure()
        text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(self.root / name, text.encode())

    def _write_text(self, name: str, text: str) -> None:
        self.ensure()
        atomic_write(self.root / name, text.encode())

    # -- feeds ----------------------------------------------------------------------------
    def _feed_dir(self, name: str) -> Path:
        return self.root / FEEDS / name

    def load_feed(self, name: str) -> CachedFeed | None:
        """The last good copy, or None (none yet, or damaged: then moved aside, and the feed
        is downloaded again whole)."""
        current = self._feed_dir(name) / "current"
        record_path = current / RECORD
        data, problem = health.read_checked(record_path,
                                            lambda d: health.check_feed_record(d, name))
        if problem is not None:
            self.set_aside_feed(name, f"{RECORD}: {problem}")
            return None
        if data is None:
            return None
        return CachedFeed(FeedRecord.from_json(data), current.resolve())

    def set_aside_feed(self, name: str, why: str) -> None:
        """The last good copy of a feed failed its check: move its generation aside."""
        current = self._feed_dir(name) / "current"
        if self.quarantine.dry_run:
            self.quarantine.set_aside(current, why)
            return
        gen = current.resolve()
        if gen.is_dir() and gen.parent == self._feed_dir(name).resolve():
            self.quarantine.set_aside(gen, why)
        with contextlib.suppress(FileNotFoundError):
            current.unlink()

    def save_feed(
        self,
        record: FeedRecord,
        files: dict[str, bytes],
        index: Iterable[str] = (),
        rejects: Iterable[str] = (),
    ) -> CachedFeed:
        """Write a new generation beside the current one, then switch the symlink to it."""
        root = self._feed_dir(record.name)
        root.mkdir(parents=True, exist_ok=True)
        gen = root / f"gen-{record.serial}-{time.time_ns()}"
        gen.mkdir()
        for fname, data in files.items():
            target = gen / fname
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        atomic_write(gen / INDEX, "".join(index).encode())
        atomic_write(gen / REJECTS, "".join(rejects).encode())
        atomic_write(gen / RECORD, json.dumps(asdict(record), indent=1).encode())
        tmp_link = tmp_name(link := root / "current")
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        tmp_link.symlink_to(gen.name)
        os.replace(tmp_link, link)
        fsync_dir(root)
        for old in root.glob("gen-*"):
            if old != gen:
                shutil.rmtree(old, ignore_errors=True)
        return CachedFeed(record, gen)

    def update_feed_record(self, record: FeedRecord) -> None:
        """Refresh a record in place (e.g. a new ETag for unchanged content)."""
        current = self._feed_dir(record.name) / "current"
        atomic_write(current / RECORD, json.dumps(asdict(record), indent=1).encode())

    def feed_names(self) -> list[str]:
        base = self.root / FEEDS
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "current").exists())

    # -- applied blocklist, status, history -----------------------------------------------
    def load_applied(self) -> tuple[Blocklist, dict[str, Any]] | None:
        """What was last applied; its sets are read from disk only when used (agent.ledger).
        A record or base that fails its check is moved aside: the next sync rebuilds it."""
        data = self._read_json(APPLIED, health.check_applied)
        if data is None:
            return None
        try:
            return applied.from_doc(self.root, data)
        except StateError as exc:
            self.quarantine.set_aside(self.root / APPLIED, exc.what)
            return None

    def staged(self, blocklist: Blocklist) -> Blocklist:
        """`blocklist` with its base on disk and a small difference from it (applied.stage),
        ready to be applied and then recorded at the cost of that difference."""
        self.ensure()
        return applied.stage(self.root, blocklist)

    def save_applied(self, blocklist: Blocklist, meta: dict[str, Any]) -> None:
        """Record `blocklist` as applied: at the cost of its difference from the last record
        when it was made from it (`LazyBlocklist.after`), else whole."""
        self.ensure()
        applied.save(self.root, blocklist, meta)

    def write_problem(self) -> str | None:
        """Why nothing can be written to the state directory now (health.write_problem)."""
        return health.write_problem(self.root)

    def applied_mtime(self) -> float | None:
        """When applied.json was last written (the metrics' "last applied" time)."""
        try:
            return (self.root / APPLIED).stat().st_mtime
        except FileNotFoundError:
            return None

    def load_status(self) -> dict[str, Any]:
        data = self._read_json(STATUS, health.check_status)
        return data if isinstance(data, dict) else {}

    def save_status(self, data: dict[str, Any]) -> None:
        self._write_json(STATUS, data)

    def record_sync(self, sync: Mapping[str, Any], *, when: datetime,
                    refreshed: Collection[str] | None) -> None:
        """status.json after a sync (`sync` is its `--json` document; see agent.state.status)."""
        if sync["applied"]:
            enforced = sync["enforced"]
        else:
            applied = self.load_applied()
            enforced = (applied[0] if applied else Blocklist()).counts()
        previous = self.load_status()
        status = after_sync(previous, sync, enforced=enforced, stamp=iso_z(when),
                            refreshed=refreshed)
        status["state_repairs"] = health.recent_repairs(previous, list(sync.get(
            "state_repairs", [])) + self.repairs(), iso_z(when))
        self.save_status(status)

    def append_history(self, event: dict[str, Any]) -> None:
        """Append one audit line; O_APPEND writes of one line are atomic enough for an audit."""
        self.ensure()
        line = json.dumps({"time": int(time.time()), **event}, sort_keys=True) + "\n"
        fd = os.open(self.root / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- what the guards learnt at the edge ------------------------------------------------
    def load_lifelines(self) -> dict[str, Any]:
        """Addresses the lifelines and protected names resolved to ({} when none is kept): they
        stay protected while DNS does not answer, and the kill switch keeps them open."""
        return self._read_record(LIFELINES)

    def save_lifelines(self, data: dict[str, Any]) -> None:
        self._write_cache(LIFELINES, data)

    def _write_cache(self, name: str, data: dict[str, Any]) -> None:
        """Best effort: a cache of resolved addresses; a full disk must not stop the sync that
        needs them (it uses what it resolved; the next one writes them again)."""
        try:
            self._write_json(name, data)
        except OSError as exc:
            log.warning("cannot write %s: %s; the addresses resolved now are used all the same",
                        self.root / name, exc.strerror or exc)

    # -- the kill switch and the backends' own records ------------------------------------
    def load_isolation(self) -> dict[str, Any]:
        """The kill switch's record, {} when there is none or it is unreadable: a damaged
        record must not stop the kill switch, which then starts from "not isolated"."""
        return self._read_record(ISOLATION)

    def save_isolation(self, data: dict[str, Any]) -> None:
        self._write_json(ISOLATION, data)

    def load_allow_names(self) -> dict[str, Any]:
        """The addresses isolation.allow's names last resolved to ({} if none or unreadable):
        what isolate and break-glass.nft use without asking a resolver."""
        return self._read_record(ALLOW_NAMES)

    def save_allow_names(self, data: dict[str, Any]) -> None:
        self._write_cache(ALLOW_NAMES, data)

    def save_boot_ruleset(self, text: str, check: Callable[[Path], None] | None = None) -> Path:
        """enforced.nft, loaded by blocklist-agent-boot.service before the network is up;
        `check` (nft -c) refuses a file that would not load before it replaces the old one."""
        self.ensure()
        atomic_write(self.root / ENFORCED_NFT, text.encode(), check=check)
        return self.root / ENFORCED_NFT

    def boot_ruleset_tail(self, size: int = 4096) -> str | None:
        """The end of enforced.nft (its include line), without reading a 30 MB file whole."""
        try:
            with open(self.root / ENFORCED_NFT, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None

    def save_isolation_boot(self, text: str, check: Callable[[Path], None] | None = None
                            ) -> Path:
        """isolation.nft, included by enforced.nft: the kill switch with its time left."""
        self.ensure()
        atomic_write(self.root / ISOLATION_NFT, text.encode(), check=check)
        return self.root / ISOLATION_NFT

    def boot_file_sha256(self, name: str) -> str | None:
        """sha256 of a boot file (enforced.nft, isolation.nft, break-glass.nft) or None."""
        return health.sha256_of(self.root / name)

    def isolation_boot_path(self) -> Path:
        return self.root / ISOLATION_NFT

    def save_break_glass(self, text: str, check: Callable[[Path], None] | None = None) -> Path:
        self.ensure()
        atomic_write(self.root / BREAK_GLASS_NFT, text.encode(), check=check)
        return self.root / BREAK_GLASS_NFT

    def load_nft_record(self) -> dict[str, Any]:
        """What the nftables backend last applied (table, settings hash, skeleton hash)."""
        return self._read_record(NFT_RECORD)

    def save_nft_record(self, data: dict[str, Any]) -> None:
        self._write_json(NFT_RECORD, data)

    def has_nft_record(self) -> bool:
        return (self.root / NFT_RECORD).exists()

    def forget_nft_record(self) -> None:
        """The kernel table no longer holds the applied blocklist: force a full reload."""
        (self.root / NFT_RECORD).unlink(missing_ok=True)

    def load_dns_record(self) -> dict[str, Any]:
        """What the DNS backend last gave the resolver (serial, fingerprint, settings)."""
        return self._read_record(DNS_RECORD)

    def save_dns_record(self, data: dict[str, Any]) -> None:
        self._write_json(DNS_RECORD, data)
