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
from agent.indicators import CANONICAL_ADDRESS, CANONICAL_NAME, canonical_kind

RECORD = "record.json"
INDEX = "index.tsv"  # value, coverage flag (Indicator.flag: "", "*", "."; "!" exception), file:line
CANONICAL_MARK = "#canonical"  # flag, payload: its canonical rows are entries too
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
        """Provenance of every accepted value, for `why` (nothing if the file is missing).

        The bulk parser writes one CANONICAL_MARK line per payload instead of an entry per
        canonical row (agent.bulk): their entries are rebuilt here from the payload, in line
        order with the entries written out, so that readers see the same lines either way.
        """
        marked: list[tuple[str, str]] = []  # (payload, flag of its canonical names)
        written: dict[str, list[tuple[int, str]]] = {}
        for line in self._lines(INDEX):
            if line.startswith(CANONICAL_MARK + "\t"):
                _, flag, path = line.rstrip("\n").split("\t", 2)
                marked.append((path, flag))
                continue
            if not marked:
                yield line
                continue
            ref = line.rstrip("\n").rpartition("\t")[2]
            path, _, number = ref.rpartition(":")
            written.setdefault(path, []).append((int(number) if number.isdigit() else 0, line))
        for path, flag in marked:
            yield from self._canonical(path, flag, written.get(path, []))

    def _canonical(self, path: str, flag: str, written: list[tuple[int, str]]
                   ) -> Iterator[str]:
        try:
            text = self.read(path).decode("utf-8", "replace").removeprefix("\ufeff")  # a BOM
        except StateError:
            return
        pending = iter(written)
        upcoming = next(pending, None)
        kinds = {CANONICAL_ADDRESS: "", CANONICAL_NAME: flag}
        for number, row in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
            while upcoming is not None and upcoming[0] <= number:
                yield upcoming[1]
                upcoming = next(pending, None)
            kind = canonical_kind(row)
            if kind:
                yield f"{row}\t{kinds[kind]}\t{path}:{number}\n"
        while upcoming is not None:
            yield upcoming[1]
            upcoming = next(pending, None)

    def reject_lines(self) -> Iterator[str]:
        """Every value the guard rails refused in this copy, with the reason."""
        return self._lines(REJECTS)

    def _lines(self, name: str) -> Iterator[str]:
        try:
            with open(self.directory / name, encoding="utf-8") as handle:
                yield from handle
        except FileNotFoundError:
            return
