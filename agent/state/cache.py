"""cache/NAME/KEY.digest: each feed's validated results (agent.digest), kept between syncs.

    header line   "blocklist-agent digest 3 HEADER_SHA256 BODY_SHA256 HEADER_BYTES"
    header        JSON: the Summary and the byte size of each kind's blob, and of the special
                  rows' (agent.digest.Digest.special; -1: none known), of the known rows'
                  verdicts (Digest.known), Digest.plain, the special rows' line indexes
                  (Digest.special_lines; absent from files written before they were kept)
    body          the accepted values, one "\\n"-separated blob per kind (agent.digest.KINDS),
                  then the special rows, then the known rows ("row\\tkind\\tvalue\\tflag\\n")

A cache is never trusted: a file whose name, key, or either sha256 does not match is removed and
the result computed again from the verified payloads. It is not fsynced either (losing it costs
one parse; a torn file fails its check). The newest KEEP files of a feed are kept: the one in
force, and the results of updates that were held or failed, so that retrying them does not parse
again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from agent.digest import KINDS, Digest, Summary

log = logging.getLogger(__name__)
CACHE = "cache"
MAGIC = b"blocklist-agent digest 3"
KEEP = 3
_KEY = re.compile(r"[0-9a-f]{64}")


def encode(digest: Digest) -> bytes:
    blobs = [("\n".join(digest.values(kind))).encode() for kind in KINDS]
    special = None if digest.special is None else "\n".join(digest.special).encode()
    known = "".join(f"{row}\t{kind}\t{value}\t{flag}\n" for row, (kind, value, flag)
                    in (digest.known or {}).items()).encode()
    body = b"".join([*blobs, special or b"", known])
    header = json.dumps({"summary": digest.summary.to_json(), "sizes": [len(b) for b in blobs],
                         "special": -1 if special is None else len(special),
                         "known": len(known),
                         "special_lines": None if digest.special_lines is None
                         else list(digest.special_lines),
                         "plain": None if digest.plain is None else dict(digest.plain)}).encode()
    line = b"%s %s %s %d\n" % (MAGIC, hashlib.sha256(header).hexdigest().encode(),
                               hashlib.sha256(body).hexdigest().encode(), len(header))
    return line + header + body


def decode(data: bytes, key: str) -> Digest:
    """The digest in `data`; ValueError when anything in it fails its check."""
    end = data.find(b"\n", 0, 300)
    fields = data[:end].split(b" ")
    if end < 0 or b" ".join(fields[:3]) != MAGIC or len(fields) != 6:
        raise ValueError("not a digest file")
    header_sha, body_sha, size = fields[3].decode(), fields[4].decode(), int(fields[5])
    header = data[end + 1:end + 1 + size]
    body = memoryview(data)[end + 1 + size:]
    if hashlib.sha256(header).hexdigest() != header_sha:
        raise ValueError("its header fails its sha256")
    if hashlib.sha256(body).hexdigest() != body_sha:
        raise ValueError("its values fail their sha256")
    doc = json.loads(header)
    summary = Summary.from_json(doc["summary"])
    sizes = [int(n) for n in doc["sizes"]]
    special, known = int(doc["special"]), int(doc["known"])
    start = sum(sizes)
    if (summary.key != key or len(sizes) != len(KINDS)
            or start + max(special, 0) + known != len(body)):
        raise ValueError("its key or sizes do not match")
    rows = str(body[start:start + max(special, 0)], "utf-8")
    verdicts = {}
    for line in str(body[len(body) - known:], "utf-8").split("\n")[:-1]:
        row, kind, value, flag = line.split("\t")
        if kind not in KINDS:
            raise ValueError(f"a known row of kind {kind!r}")
        verdicts[row] = (kind, value, flag)

    def values() -> dict[str, list[str]]:
        out, offset = {}, 0
        for kind, n in zip(KINDS, sizes, strict=True):
            text = str(body[offset:offset + n], "utf-8")
            out[kind] = text.split("\n") if text else []
            offset += n
        return out

    plain = doc["plain"]
    return Digest(summary, values, special=None if special < 0 else
                  (rows.split("\n") if rows else []),
                  plain=None if plain is None else {str(k): int(n) for k, n in plain.items()},
                  known=verdicts, special_lines=_lines(doc.get("special_lines")))


def _lines(found: object) -> tuple[int, ...] | None:
    """The special rows' line indexes (absent from a file written before they were kept)."""
    if found is None:
        return None
    if not isinstance(found, list):
        raise ValueError("its special rows' lines are not a list")
    return tuple(int(n) for n in found)


def load(root: Path, feed: str, key: str) -> Digest | None:
    """The cached digest `key` of `feed`, or None (absent, or failing its check: removed)."""
    if not _KEY.fullmatch(key):
        return None
    path = root / CACHE / feed / f"{key}.digest"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return decode(data, key)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        log.warning("feed %s: cached result %s is damaged (%s): computing it again", feed,
                    path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def save(root: Path, feed: str, digest: Digest) -> None:
    """Keep `digest`; best effort (a cache that cannot be written only costs time)."""
    directory = root / CACHE / feed
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(encode(digest))
            os.replace(tmp, directory / f"{digest.key}.digest")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _sweep(directory)
    except OSError as exc:
        log.warning("feed %s: cannot keep its validated result in %s: %s", feed, directory,
                    exc.strerror or exc)


def _sweep(directory: Path) -> None:
    """The KEEP newest digests of a feed stay; older ones and stray temp files go."""
    entries = sorted(directory.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    kept = 0
    for entry in entries:
        if entry.suffix == ".digest" and kept < KEEP:
            kept += 1
            continue
        with contextlib.suppress(OSError):
            entry.unlink()


def forget(root: Path, feeds: set[str]) -> None:
    """Drop the caches of feeds no longer configured."""
    base = root / CACHE
    if not base.is_dir():
        return
    for entry in base.iterdir():
        if entry.name not in feeds and entry.is_dir():
            for item in entry.iterdir():
                with contextlib.suppress(OSError):
                    item.unlink()
            with contextlib.suppress(OSError):
                entry.rmdir()


class Digests:
    """The store's face of the cache (StateStore.digests): feed name and key to a result.

    `keep` queues a result and `flush` writes the queue: a sync keeps what it computed once
    the kernel and the resolver have the change (pipeline.run), so that writing a million
    values (0.1 s) does not delay the change being enforced. A result queued is found by
    `load` until then; one lost by a crash before `flush` is computed again. A result read
    is also held until `flush`: a sync asks for the previous copy's twice (the base of the
    reading by difference, then the merge's), and checking a million values' sha256 again
    costs 20 ms."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._queued: dict[tuple[str, str], Digest] = {}
        self._read: dict[tuple[str, str], Digest] = {}

    def load(self, feed: str, key: str) -> Digest | None:
        """The cached result, or None if absent or failing its check (then removed)."""
        found = self._queued.get((feed, key)) or self._read.get((feed, key))
        if found is None:
            found = load(self.root, feed, key)
            if found is not None:
                self._read[(feed, key)] = found
        return found

    def save(self, feed: str, digest: Digest) -> None:
        save(self.root, feed, digest)

    def keep(self, feed: str, digest: Digest) -> None:
        self._queued[(feed, digest.key)] = digest

    def flush(self) -> None:
        self._read = {}
        queued, self._queued = self._queued, {}
        for (feed, _), digest in queued.items():
            save(self.root, feed, digest)

    def forget(self, keep: set[str]) -> None:
        """Drop the cached results of feeds no longer configured."""
        forget(self.root, keep)
