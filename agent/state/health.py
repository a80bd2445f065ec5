"""The shape of every state file, checked on read, and where a damaged one goes.

A gateway runs for months: a disk error, a full disk during a write by another tool, a hand
edit or a bug leaves a file that is JSON but not what the agent wrote (`[]`, a record without
its serial), or no JSON at all. A file that fails its check is never half-used and never stops
the agent: it is moved to `state_dir/damaged/` (kept for inspection, named in `status`) and the
agent goes on as if it were missing, which every reader handles by rebuilding it from what can
be trusted: the kernel, the feeds (downloaded again), the configuration.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.merge import SET_NAMES
from agent.util.fsutil import tmp_name

log = logging.getLogger(__name__)
DAMAGED = "damaged"
KEEP_DAMAGED = 10  # newest damaged files kept; older ones are removed (a 30 MB file each)

Check = Callable[[Any], str | None]  # the problem with a parsed document, or None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(value: object, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def check_mapping(doc: Any) -> str | None:
    return None if isinstance(doc, dict) else f"a JSON object was expected, not {_kind(doc)}"


def check_applied(doc: Any) -> str | None:
    """applied.json: {"meta": {...}, "sets": {SET: [value, ...]}} (the first format), or
    {"meta", "base": SHA256, "counts": {SET: n}, "delta": {"added"/"removed": {SET: [...]}}}
    (agent/state/applied.py: the difference from a base)."""
    if not isinstance(doc, dict):
        return f"a JSON object was expected, not {_kind(doc)}"
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        return "'meta' must be a JSON object"
    problem = _string_lists(doc["sets"], "sets") if "sets" in doc else _based(doc)
    if problem:
        return problem
    for key in ("rpz_serial", "generation", "applied_at"):
        if key in meta and not _is_int(meta[key]):
            return f"meta.{key} must be an integer"
    feeds = meta.get("feeds", {})
    if not isinstance(feeds, dict) or not all(_is_int(v) for v in feeds.values()):
        return "meta.feeds must map feed names to serials"
    return None


def _string_lists(sets: Any, where: str) -> str | None:
    if not isinstance(sets, dict):
        return f"{where!r} must be a JSON object"
    for name, values in sets.items():
        if name not in SET_NAMES:
            return f"{where} holds an unknown set {name!r}"
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return f"set {name!r} in {where} must be a list of strings"
    return None


def _based(doc: dict[str, Any]) -> str | None:
    base, counts, delta = doc.get("base"), doc.get("counts"), doc.get("delta", {})
    if not isinstance(base, str) or len(base) != 64 or base.strip("0123456789abcdef"):
        return "'base' must be the sha256 of the base file"
    if not isinstance(counts, dict) or not all(
            name in SET_NAMES and _is_int(n) and n >= 0 for name, n in counts.items()):
        return "'counts' must map set names to sizes"
    if not isinstance(delta, dict):
        return "'delta' must be a JSON object"
    for part in ("added", "removed"):
        problem = _string_lists(delta.get(part, {}), f"delta.{part}")
        if problem:
            return problem
    return None


def check_status(doc: Any) -> str | None:
    """status.json: only reporting depends on it, but its `feeds` feed the next status."""
    if not isinstance(doc, dict):
        return f"a JSON object was expected, not {_kind(doc)}"
    feeds = doc.get("feeds", {})
    if not isinstance(feeds, dict) or not all(isinstance(v, dict) for v in feeds.values()):
        return "'feeds' must map feed names to objects"
    for entry in feeds.values():
        if not _is_int(entry.get("failures", 0)):
            return "a feed's 'failures' must be an integer"
    if not _optional(doc.get("last_sync"), dict):
        return "'last_sync' must be an object"
    return None


_RECORD_TEXT = ("name", "sha256", "url")
_RECORD_OPTIONAL_TEXT = ("publisher", "issued", "expires", "key_id", "etag", "last_modified")


def check_feed_record(doc: Any, name: str | None = None) -> str | None:
    """feeds/NAME/current/record.json: what was accepted (serial, hashes, files)."""
    if not isinstance(doc, dict):
        return f"a JSON object was expected, not {_kind(doc)}"
    for key in _RECORD_TEXT:
        if not isinstance(doc.get(key), str):
            return f"{key!r} must be a string"
    for key in ("serial", "accepted_at"):
        if not _is_int(doc.get(key)):
            return f"{key!r} must be an integer"
    for key in _RECORD_OPTIONAL_TEXT:
        if not _optional(doc.get(key), str):
            return f"{key!r} must be a string"
    files = doc.get("files", {})
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return "'files' must map file names to formats"
    if name is not None and doc["name"] != name:
        return f"it is the record of feed {doc['name']!r}, not {name!r}"
    return None


def _kind(doc: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(doc), type(doc).__name__)


def read_checked(path: Path, check: Check) -> tuple[Any, str | None]:
    """(the parsed document, None), (None, None) when the file is missing, or (None, the
    problem) when it is unreadable, not JSON or not of its shape."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        what = "it is empty" if not text.strip() else f"not JSON ({str(exc)[:80]})"
        return None, what
    return doc, check(doc)


class Quarantine:
    """Moves damaged files aside into `root/damaged/` and remembers what it moved (for status).

    The move is a rename on the same filesystem, so it works on a full disk too; if even that
    fails (a read-only disk), the file is left where it is and the reader still goes on without
    it: a damaged file must never stop the enforcement.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.moved: list[dict[str, str]] = []
        self.dry_run = False  # `sync --dry-run` changes nothing: the file is only reported

    def set_aside(self, path: Path, why: str) -> dict[str, str]:
        if self.dry_run:
            entry = {"file": str(path), "problem": why, "moved_to": ""}
            self.moved.append(entry)
            return entry
        folder = self.root / DAMAGED
        try:
            rel = str(path.relative_to(self.root))
        except ValueError:
            rel = path.name
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = folder / f"{rel.replace('/', '_')}.{stamp}.{os.getpid()}"
        entry = {"file": str(path), "problem": why, "moved_to": str(target)}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError as exc:
            entry["moved_to"] = ""
            entry["problem"] += f" (could not be moved aside: {exc.strerror or exc})"
            with contextlib.suppress(OSError):  # at least stop reading it
                if path.is_file() and not path.is_symlink():
                    path.unlink()
        log.error("state file %s is damaged (%s): moved to %s; it is rebuilt", path, why,
                  entry["moved_to"] or "nowhere")
        self.moved.append(entry)
        self._prune(folder)
        return entry

    def take(self) -> list[dict[str, str]]:
        """What was moved aside since the last call (one sync's repairs)."""
        moved, self.moved = self.moved, []
        return moved

    @staticmethod
    def _prune(folder: Path) -> None:
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.lstat().st_mtime, reverse=True)
        except OSError:
            return
        for old in entries[KEEP_DAMAGED:]:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    old.unlink()


def recent_repairs(previous: Mapping[str, Any], repairs: list[dict[str, str]], stamp: str
                   ) -> list[dict[str, str]]:
    """The last few repairs for status.json: this sync's first, then older ones."""
    old = previous.get("state_repairs")
    kept = [r for r in old if isinstance(r, dict)] if isinstance(old, list) else []
    return ([{**r, "time": stamp} for r in repairs] + kept)[:KEEP_DAMAGED]


def write_problem(root: Path) -> str | None:
    """Why nothing can be written to `root` now (full, read-only, I/O errors), found by writing
    and removing a small file; None when it can be written or when this user may not write it
    anyway (a read-only `status` by a non-root user)."""
    probe = tmp_name(root / "write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            left = 65536  # a short write means the next one fails: write it all
            while left > 0:
                written = os.write(fd, b"\0" * left)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                left -= written
            os.fsync(fd)
        finally:
            os.close(fd)
    except PermissionError:
        return None
    except FileNotFoundError:
        return None if not root.exists() else "cannot create files"
    except OSError as exc:
        return f"{exc.strerror or exc} (nothing can be recorded; syncs fail until fixed)"
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


def stray_generations(feeds: Path) -> list[Path]:
    """Remove every feeds/NAME/gen-* that `current` does not point to (a save cut short);
    only under the sync lock, where no save can be under way."""
    removed: list[Path] = []
    for feed in feeds.iterdir() if feeds.is_dir() else ():
        current = os.path.realpath(feed / "current")
        for gen in feed.glob("gen-*"):
            if str(gen.resolve()) != current:
                shutil.rmtree(gen, ignore_errors=True)
                removed.append(gen)
    return removed


def sha256_of(path: Path) -> str | None:
    """The file's sha256, read in blocks (a 30 MB enforced.nft), or None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# -- what `status` and `sync` say of it ---------------------------------------------------------

def state_dir_doc(store: Any, status: Mapping[str, Any]) -> dict[str, Any]:
    """`status --json`'s state_dir: can it be written now, what was repaired lately."""
    return {"path": str(store.root), "problem": store.write_problem(),
            "repairs": list(status.get("state_repairs", [])) + store.repairs()}


def state_dir_alarm(doc: Mapping[str, Any], red: str, reset: str) -> list[str]:
    if not doc.get("problem"):
        return []
    return [f"{red}STATE DIRECTORY {doc['path']} CANNOT BE WRITTEN: {doc['problem']}{reset}",
            "  what to do: free space or fix the disk (df -h, dmesg); the last sync may have "
            "applied more than what is shown below", ""]


def repair_lines(repairs: list[dict[str, str]]) -> list[str]:
    return [f"repaired {r.get('time', 'now')}: {r['file']} was damaged ({r['problem']}); moved "
            f"to {r['moved_to'] or 'nowhere'} and rebuilt" for r in repairs]
