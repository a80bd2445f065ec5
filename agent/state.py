"""Record: the state directory, the agent's memory of what it accepted and what it enforces.

Layout (every write is temp + fsync + rename; a feed generation is switched by renaming a
symlink, so a power cut leaves either the old or the new generation, never a mix):

    state_dir/
      lock                      held by a sync, so the daemon and an operator never interleave
      status.json               last outcome per feed, last sync, plan summary (read by `status`)
      applied.json              the merged blocklist as last applied, plus the RPZ serial
      history.jsonl             audit trail (syncs, overrides, isolation)
      feeds/NAME/current ->     gen-SERIAL-N/  (symlink)
      feeds/NAME/gen-*/         the last good feed as downloaded (manifest, signature, payloads),
                                record.json (serial, hashes, ETag) and index.tsv / rejects.tsv
                                (provenance of every accepted and refused value, for `why`)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import StateError
from agent.fsutil import atomic_write, fsync_dir
from agent.merge import Blocklist


@dataclass(frozen=True)
class FeedRecord:
    """What was accepted for one feed: enough to refuse rollback and replay next time."""

    name: str
    serial: int
    sha256: str  # of the manifest (or of the single list file)
    url: str
    accepted_at: int
    publisher: str = ""
    issued: str | None = None
    expires: str | None = None
    key_id: str = ""
    etag: str | None = None
    last_modified: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # file name -> format ("" for metadata)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class CachedFeed:
    record: FeedRecord
    directory: Path

    def read(self, name: str) -> bytes:
        try:
            return (self.directory / name).read_bytes()
        except OSError as exc:
            raise StateError(
                f"last good copy of feed {self.record.name!r} is missing {name}: {exc.strerror}",
                where=str(self.directory),
                hint="run `blocklist-agent sync` to fetch the feed again",
            ) from None


class StateStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir)

    # -- plumbing -------------------------------------------------------------------------
    def ensure(self) -> None:
        try:
            (self.root / "feeds").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory: {exc.strerror}", where=str(self.root),
                hint="check state_dir in the configuration and that the agent runs as root",
            ) from None

    @contextlib.contextmanager
    def lock(self, wait: bool = True) -> Iterator[None]:
        """An exclusive lock: one sync at a time, whoever starts it."""
        self.ensure()
        with open(self.root / "lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StateError(
                    "another blocklist-agent command is changing the state right now",
                    where=str(self.root / "lock"), hint="wait for it to finish and try again",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_json(self, name: str) -> Any:
        path = self.root / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(
                f"cannot read {name}: {exc}", where=str(path),
                hint="move the file aside; the next sync rebuilds it from the feeds",
            ) from None

    def _write_json(self, name: str, data: Any) -> None:
        self.ensure()
        text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(self.root / name, text.encode())

    # -- feeds ----------------------------------------------------------------------------
    def feed_root(self, name: str) -> Path:
        return self.root / "feeds" / name

    def load_feed(self, name: str) -> CachedFeed | None:
        current = self.feed_root(name) / "current"
        record_path = current / "record.json"
        try:
            data = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(
                f"the record of feed {name!r} is unreadable: {exc}", where=str(record_path),
                hint=f"remove {current} and run `blocklist-agent sync` to fetch the feed again",
            ) from None
        return CachedFeed(FeedRecord.from_json(data), current.resolve())

    def save_feed(
        self,
        record: FeedRecord,
        files: dict[str, bytes],
        index: Iterable[str] = (),
        rejects: Iterable[str] = (),
    ) -> CachedFeed:
        """Write a new generation beside the current one, then switch the symlink to it."""
        root = self.feed_root(record.name)
        root.mkdir(parents=True, exist_ok=True)
        gen = root / f"gen-{record.serial}-{time.time_ns()}"
        gen.mkdir()
        for fname, data in files.items():
            target = gen / fname
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        atomic_write(gen / "index.tsv", "".join(index).encode())
        atomic_write(gen / "rejects.tsv", "".join(rejects).encode())
        atomic_write(gen / "record.json", json.dumps(asdict(record), indent=1).encode())
        link = root / "current"
        tmp_link = root / f".current.{os.getpid()}"
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
        current = self.feed_root(record.name) / "current"
        atomic_write(current / "record.json", json.dumps(asdict(record), indent=1).encode())

    def feed_names(self) -> list[str]:
        base = self.root / "feeds"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "current").exists())

    # -- applied blocklist, status, history -----------------------------------------------
    def load_applied(self) -> tuple[Blocklist, dict[str, Any]] | None:
        data = self._read_json("applied.json")
        if data is None:
            return None
        return Blocklist.from_json(data.get("sets", {})), data.get("meta", {})

    def save_applied(self, blocklist: Blocklist, meta: dict[str, Any]) -> None:
        self.ensure()
        data = {"meta": meta, "sets": blocklist.to_json()}
        atomic_write(self.root / "applied.json", json.dumps(data).encode())

    def load_status(self) -> dict[str, Any]:
        data = self._read_json("status.json")
        return data if isinstance(data, dict) else {}

    def save_status(self, status: dict[str, Any]) -> None:
        self._write_json("status.json", status)

    def append_history(self, event: dict[str, Any]) -> None:
        """Append one audit line; O_APPEND writes of one line are atomic enough for an audit."""
        self.ensure()
        line = json.dumps({"time": int(time.time()), **event}, sort_keys=True) + "\n"
        fd = os.open(self.root / "history.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_file(self, name: str, data: bytes, mode: int = 0o644) -> Path:
        self.ensure()
        path = self.root / name
        atomic_write(path, data, mode)
        return path
