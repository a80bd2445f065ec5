"""The locks of the state directory: who may change what, and who is running.

    lock           one sync (or override edit) at a time; a sync holds it throughout
    kernel.lock    the one writer of the nftables table, around each commit (seconds)
    daemon.lock    held by the running daemon for its lifetime; says its pid and command
    local.lock     allow/deny/unallow/undeny: one edit of cli.allow / cli.deny at a time

All are flock(2) locks: the kernel releases them with the process, so a crash leaves nothing
to clean up, and a file that says who holds it only serves the operator's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from agent.errors import StateError


@contextlib.contextmanager
def exclusive(path: Path, *, wait: bool, busy: str, hint: str) -> Iterator[None]:
    """Hold `path`'s lock (waiting for it with `wait`, else StateError(busy))."""
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise StateError(busy, where=str(path), hint=hint) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def with_timeout(path: Path, timeout: float) -> Iterator[None]:
    """The kernel lock: short (a commit and a few files), so a waiting `isolate` waits seconds
    at most; the holder's pid is written inside for the message of the one who waits."""
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(errors="replace").strip() or "unknown"
                    raise StateError(
                        f"the nftables table is being changed by another process "
                        f"(pid {holder}) for more than {timeout:.0f} s",
                        where=str(path), hint="check `ps -p PID`; try again") from None
                time.sleep(0.02)
        handle.seek(0)
        handle.truncate()
        with contextlib.suppress(OSError):  # a full disk must not stop the kill switch
            handle.write(f"{os.getpid()}\n".encode())
            handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def hold_instance(path: Path) -> IO[bytes]:
    """The daemon's lock, kept until the process ends (the returned handle must stay open).

    Two daemons on one state directory would apply over each other and fight over the table;
    the second one refuses to start and says who the first one is.
    """
    handle = open(path, "a+b")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").split("\n")
        handle.close()
        pid = holder[0] or "unknown"
        how = holder[1] if len(holder) > 1 and holder[1] else "unknown command"
        since = f", since {holder[2]}" if len(holder) > 2 and holder[2] else ""
        raise StateError(
            f"another blocklist-agent daemon is already running on this state directory "
            f"(pid {pid}, started as `{how}`{since})", where=str(path),
            hint="stop it first (systemctl stop blocklist-agent, or kill PID); two daemons "
            "would apply over each other") from None
    handle.seek(0)
    handle.truncate()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with contextlib.suppress(OSError):
        handle.write(f"{os.getpid()}\n{' '.join(sys.argv)}\n{stamp}\n".encode())
        handle.flush()
    return handle
