"""What the state directory remembers of one feed: its record, and a handle on its last good copy.

A generation directory (`feeds/NAME/gen-SERIAL-N/`) is written once and never changed, except
its record.json (a new ETag for unchanged content); `current` points at the one in force. The
files are only ever read through a `CachedFeed`, so their names live here and in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import StateError

RECORD = "record.json"
INDEX = "index.tsv"  # value, coverage flag (Indicator.flag: "", "*", "."; "!" exception), file:line
REJECTS = "rejects.tsv"  # value, guard reason, detail


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
    # where an API source (MISP, TAXII) left off: the next pull asks only for what changed since
    # (MISP timestamp, TAXII added_after, each MISP feed event's timestamp). It is written with
    # the copy it describes, so the two can never disagree.
    cursor: dict[str, Any] = field(default_factory=dict)

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

    def index_lines(self) -> Iterator[str]:
        """Provenance of every accepted value, for `why` (nothing if the file is missing)."""
        return self._lines(INDEX)

    def reject_lines(self) -> Iterator[str]:
        """Every value the guard rails refused in this copy, with the reason."""
        return self._lines(REJECTS)

    def _lines(self, name: str) -> Iterator[str]:
        try:
            with open(self.directory / name, encoding="utf-8") as handle:
                yield from handle
        except FileNotFoundError:
            return
