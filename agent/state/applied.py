"""applied.json and its base: the blocklist last applied, written at the cost of the change.

    applied.json             meta (serials, generation, rpz serial, time), the count of every
                             set, the name of the base, the difference from it (agent.ledger)
    applied.base/SHA256.json the base: one text blob per set; named by its sha256, which is
                             checked whenever it is read

A sync rewrites only applied.json (small: the difference); once the difference holds a tenth of
the entries the whole list is written as a new base (COMPACT_*). Crash safety: a new base is
written under a new name before applied.json points to it, and old bases are removed only
after, so applied.json always names a complete base. The first format (every set inline under
"sets") is still read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import StateError
from agent.ledger import COMPACT_MIN, COMPACT_SHARE, Delta, LazyBlocklist
from agent.merge import SET_NAMES, Blocklist
from agent.util.fsutil import atomic_write

APPLIED = "applied.json"
BASE_DIR = "applied.base"
FORMAT = "applied/2"
_HINT = "move applied.json aside; the next sync applies every feed again and rebuilds it"


@dataclass(frozen=True)
class BaseFile:
    """A base on disk: a header line (JSON: per set, where its blob starts, its size and its
    sha256), then the blobs. The file is named by the header's sha256, so a set read alone is
    checked as surely as the whole file; calling it gives the sets' blobs, each read (and
    checked) only when asked for."""

    root: Path
    sha256: str

    @property
    def path(self) -> Path:
        return self.root / BASE_DIR / f"{self.sha256}.json"

    def __call__(self) -> Mapping[str, str]:
        return _Blobs(self)

    def _fail(self, what: str) -> StateError:
        return StateError(f"the base of applied.json is {what}", where=str(self.path),
                          hint=_HINT)

    def header(self) -> tuple[int, dict[str, list[Any]]]:
        """(where the blobs start, per set: [offset from there, size, sha256])."""
        try:
            with open(self.path, "rb") as handle:
                line = handle.readline()
        except OSError as exc:
            raise self._fail(f"unreadable ({exc.strerror})") from None
        if hashlib.sha256(line).hexdigest() != self.sha256:
            raise self._fail("damaged (its sha256 does not match its name)")
        try:
            sets: dict[str, list[Any]] = json.loads(line)["sets"]
        except (ValueError, KeyError, TypeError):
            raise self._fail("not a base") from None
        return len(line), sets

    def check(self) -> None:
        """StateError unless the file is whole: its header and every set's sha256."""
        start, sets = self.header()
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise self._fail(f"unreadable ({exc.strerror})") from None
        for where in sets.values():
            offset, size = start + int(where[0]), int(where[1])
            if hashlib.sha256(data[offset:offset + size]).hexdigest() != str(where[2]):
                raise self._fail("damaged (a set fails its sha256)")

    def blob(self, start: int, where: list[Any]) -> str:
        offset, size, sha = start + int(where[0]), int(where[1]), str(where[2])
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(size)
        except OSError as exc:
            raise self._fail(f"unreadable ({exc.strerror})") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise self._fail("damaged (a set fails its sha256)")
        return data.decode()


class _Blobs(Mapping[str, str]):
    def __init__(self, base: BaseFile) -> None:
        self.base = base
        self.start, sets = base.header()
        self.where = {k: v for k, v in sets.items() if k in SET_NAMES}

    def __getitem__(self, name: str) -> str:
        return self.base.blob(self.start, self.where[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def from_doc(root: Path, data: Mapping[str, Any]) -> tuple[Blocklist, dict[str, Any]]:
    """The blocklist and meta of an applied.json document that passed its shape check
    (agent.state.health.check_applied); StateError when its base is missing or damaged. The
    whole base is checked here, once, against its sha256s (tens of milliseconds for a million
    entries), so that a damaged base is found before a sync relies on it, not half-way."""
    meta = dict(data.get("meta") or {})
    if "sets" in data:  # the first format: every set inline
        return Blocklist.from_json(data["sets"]), meta
    base = BaseFile(root, str(data["base"]))
    base.check()
    return LazyBlocklist(base, Delta.from_json(data.get("delta") or {}), data["counts"]), meta


def stage(root: Path, blocklist: Blocklist) -> LazyBlocklist:
    """`blocklist` as a base on disk plus a small difference: the current base when it is made
    of it, else a new base written now (not yet named by applied.json: a base nothing names is
    swept by the next save). The backends get it before the record, so that the boot file can
    be written in parts of the same base (agent/backends/nft_boot.py)."""
    base = _current_base(root, blocklist)
    if base is not None and isinstance(blocklist, LazyBlocklist):
        return blocklist
    sets = dict(zip(SET_NAMES, blocklist, strict=True))
    base = _write_base(root, sets)
    return LazyBlocklist(base, Delta.empty(), {name: len(v) for name, v in sets.items()}, sets)


def save(root: Path, blocklist: Blocklist, meta: Mapping[str, Any]) -> None:
    """Record `blocklist` as applied: its difference from the current base when that is what
    it is made of and still small, else a new base."""
    staged = stage(root, blocklist)
    base, counts, delta = staged.base_loader(), staged.counts(), staged.delta
    assert isinstance(base, BaseFile)
    doc = {"format": FORMAT, "meta": dict(meta), "base": base.sha256, "counts": counts,
           "delta": delta.to_json()}
    before = _named_base(root)
    atomic_write(root / APPLIED, json.dumps(doc, sort_keys=True).encode())
    _sweep(root, keep={base.sha256, before})


def _current_base(root: Path, blocklist: Blocklist) -> BaseFile | None:
    """The base `blocklist` can be recorded against (None: write a new one)."""
    if not isinstance(blocklist, LazyBlocklist):
        return None
    base = blocklist.base_loader()
    if not isinstance(base, BaseFile) or base.root != root or not base.path.is_file():
        return None
    total = sum(blocklist.counts().values())
    if blocklist.delta.size() > max(COMPACT_MIN, COMPACT_SHARE * total):
        return None
    return base


def _write_base(root: Path, sets: Mapping[str, frozenset[str]]) -> BaseFile:
    blobs = [("\n".join(values)).encode() for values in sets.values()]
    where: dict[str, list[Any]] = {}
    offset = 0
    for name, blob in zip(sets, blobs, strict=True):
        where[name] = [offset, len(blob), hashlib.sha256(blob).hexdigest()]
        offset += len(blob)
    head = json.dumps({"format": FORMAT, "sets": where}, sort_keys=True).encode()
    base = BaseFile(root, hashlib.sha256(head + b"\n").hexdigest())  # the header line
    base.path.parent.mkdir(parents=True, exist_ok=True)
    if base.path.is_file():  # the same content was written before, unless it was damaged since
        with contextlib.suppress(StateError):
            base.check()
            return base
    atomic_write(base.path, b"".join([head, b"\n", *blobs]))
    return base


def _named_base(root: Path) -> str:
    """The base the current applied.json names ("" if none can be read)."""
    try:
        return str(json.loads((root / APPLIED).read_bytes()).get("base") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _sweep(root: Path, keep: set[str]) -> None:
    """Bases no record names any more, and temp files a crash left. The base named before this
    save is kept one save longer: a `status` or `why` that read the old applied.json a moment
    ago may still be reading it."""
    directory = root / BASE_DIR
    if not directory.is_dir():
        return
    names = {f"{sha}.json" for sha in keep if sha}
    for entry in directory.iterdir():
        if entry.name not in names:
            with contextlib.suppress(OSError):
                os.unlink(entry)
