"""Crash-safe file writes.

A gateway can lose power at any moment; a reader (the agent after a reboot, a web server serving a
feed) must see either the old file or the new one, never a truncated mix. Hence: write a temp file
in the same directory (same filesystem, so the rename is atomic), fsync it, rename it over the
target, then fsync the directory so the rename itself survives the crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, exclusive: bool = False) -> None:
    """Replace `path` with `data` atomically and durably, with permissions `mode`.

    The temp file is created 0600 and only then given `mode`, so a secret is never readable by
    others, even briefly. With `exclusive`, an existing `path` is never replaced: the temp file is
    hard-linked into place, which fails with FileExistsError if the name was taken meanwhile.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
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
