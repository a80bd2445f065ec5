"""Noticing edits of the configuration file and of local_dir (inotify, via python3-watchdog).

The watcher thread only records *when* something changed; the loop acts once DEBOUNCE seconds
passed without a new change (editors write twice, configuration management writes several
files), so every reload and every sync still runs on the loop's own thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEBOUNCE = 1.0  # seconds of quiet after a file change before acting on it (editors write twice)
CONFIG, LOCAL = "config", "local"


@dataclass
class Pending:
    """File changes seen by the watcher thread, acted upon by the loop after DEBOUNCE."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    config_at: float | None = None
    local_at: float | None = None

    def note(self, what: str, now: float) -> None:
        with self.lock:
            if what == CONFIG:
                self.config_at = now
            else:
                self.local_at = now

    def take(self, now: float) -> tuple[bool, bool]:
        """(configuration changed, local_dir changed), each once it has been quiet DEBOUNCE."""
        with self.lock:
            config = self.config_at is not None and now - self.config_at >= DEBOUNCE
            local = self.local_at is not None and now - self.local_at >= DEBOUNCE
            if config:
                self.config_at = None
            if local:
                self.local_at = None
        return config, local

    def dirty(self) -> bool:
        """Has anything changed that the loop has not acted upon yet?"""
        with self.lock:
            return self.config_at is not None or self.local_at is not None

    def deadlines(self) -> list[float]:
        """When the changes seen so far become due (the loop must wake up then)."""
        with self.lock:
            return [t + DEBOUNCE for t in (self.config_at, self.local_at) if t is not None]


def start_watcher(config_path: Path, local_dir: Path, changed: Callable[[str], None]) -> Any:
    """A started observer calling `changed(CONFIG)` or `changed(LOCAL)` from its own thread."""
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
                    changed(CONFIG)
                elif path == local_dir or local_dir in path.parents:
                    changed(LOCAL)

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


def stop_watcher(observer: Any) -> None:
    """Stop a watcher; best effort, since stopping must never fail the daemon's shutdown."""
    with contextlib.suppress(Exception):
        observer.stop()
        observer.join(timeout=5)
