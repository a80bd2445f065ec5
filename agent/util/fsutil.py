"""Crash-safe file writes, and the removal of what a crashed writer left behind.

A gateway can lose power at any moment; a reader (the agent after a reboot, a web server serving a
feed) must see either the old file or the new one, never a truncated mix. Hence: write a temp file
in the same directory (same filesystem, so the rename is atomic), fsync it, rename it over the
target, then fsync the directory so the rename itself survives the crash.

A process killed between the temp file and the rename leaves the temp file. Every temp name the
agent makes carries `TMP_TAG` and the writer's pid (`.NAME.blocklist-agent-PID.RANDOM.tmp`), so
`sweep` can tell the agent's leftovers from anyone else's files and a live writer's file from a
dead one's; a 10 MB zone temp file per crash would otherwise fill a gateway's disk over months.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

TMP_TAG = "blocklist-agent-"
# ours: .NAME.blocklist-agent-PID.RANDOM.tmp, .NAME.blocklist-agent-PID.tmp (links)
_OURS = re.compile(r"^\..+\." + re.escape(TMP_TAG) + r"(\d+)(?:\.[^./]*)?\.tmp$")
# older releases: .NAME.RANDOM8.tmp (mkstemp) and .current.PID / .NAME.PID.tmp (links)
# and /tmp/blocklist-agent-RANDOM8.nft (the nft executor's scripts)
_LEGACY = re.compile(r"^(?:\.(?:.+\.[a-z0-9_]{8}\.tmp|current\.\d+|.+\.\d+\.tmp)"
                     r"|blocklist-agent-[a-z0-9_]{8}\.nft)$")
LEGACY_AGE = 600.0  # seconds: an untagged temp file older than this has no live writer


def tmp_name(target: Path) -> Path:
    """A temp name beside `target` for a write that is not made through atomic_write (a link)."""
    return target.with_name(f".{target.name}.{TMP_TAG}{os.getpid()}.tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, exclusive: bool = False,
                 check: Callable[[Path], None] | None = None) -> None:
    """Replace `path` with `data` atomically and durably, with permissions `mode`.

    The temp file is created 0600 and only then given `mode`, so a secret is never readable by
    others, even briefly. With `exclusive`, an existing `path` is never replaced: the temp file is
    hard-linked into place, which fails with FileExistsError if the name was taken meanwhile.
    `check(temp_path)` may refuse the new content by raising (e.g. `nft -c -f`), before the old
    file is replaced: a boot file is never swapped for one that does not load.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TMP_TAG}{os.getpid()}.",
                               suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if check is not None:
            check(Path(tmp))
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover(entry: Path, now: float | None = None) -> bool:
    """Is `entry` a temp file of an agent process that is gone?"""
    match = _OURS.match(entry.name)
    if match is not None:
        return not _alive(int(match.group(1)))
    if _LEGACY.match(entry.name):
        try:
            age = (now or time.time()) - entry.lstat().st_mtime
        except OSError:
            return False
        return age > LEGACY_AGE
    return False


def sweep(directories: Iterable[Path], *, recursive: bool = False, prefix: str = ""
          ) -> list[Path]:
    """Remove the leftovers of dead writers in `directories` (and below with `recursive`),
    only names starting with `prefix` (a directory shared with others: the resolver's);
    returns what was removed. Best effort: a directory that cannot be read is skipped."""
    removed: list[Path] = []
    now = time.time()
    for directory in directories:
        try:
            entries = list(Path(directory).iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                if recursive:
                    removed += sweep([entry], recursive=True, prefix=prefix)
                continue
            if entry.name.startswith(prefix) and leftover(entry, now):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed
