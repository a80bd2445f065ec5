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
from collections.abc import Mapping
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
    """A base on disk; calling it reads and checks it (once per LazyBlocklist)."""

    root: Path
    sha256: str

    @property
    def path(self) -> Path:
        return self.root / BASE_DIR / f"{self.sha256}.json"

    def __call__(self) -> dict[str, str]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise StateError(f"the base of applied.json is unreadable: {exc.strerror}",
                             where=str(self.path), hint=_HINT) from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise StateError("the base of applied.json is damaged (its sha256 does not match "
                             "its name)", where=str(self.path), hint=_HINT)
        blobs = json.loads(data)["sets"]
        return {name: str(blob) for name, blob in blobs.items() if name in SET_NAMES}


def load(root: Path) -> tuple[Blocklist, dict[str, Any]] | None:
    path = root / APPLIED
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        meta = data.get("meta") or {}
        if "sets" in data:  # the first format: every set inline
            return Blocklist.from_json(data["sets"]), meta
        base = BaseFile(root, str(data["base"]))
        delta = Delta.from_json(data.get("delta") or {})
        counts = data["counts"]
        if not isinstance(counts, dict):
            raise ValueError("bad counts")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"cannot read {APPLIED}: {exc}", where=str(path), hint=_HINT) from None
    if not base.path.is_file():
        raise StateError(f"the base of {APPLIED} is missing", where=str(base.path), hint=_HINT)
    return LazyBlocklist(base, delta, counts), meta


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
    blobs = {name: "\n".join(values) for name, values in sets.items()}
    data = json.dumps({"sets": blobs}).encode()
    base = BaseFile(root, hashlib.sha256(data).hexdigest())
    base.path.parent.mkdir(parents=True, exist_ok=True)
    if not base.path.is_file():
        atomic_write(base.path, data)
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
