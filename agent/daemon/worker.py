"""A sync in a worker thread, watched by the daemon's main thread.

While a download or an apply runs, the main thread must go on feeding systemd's watchdog,
lifting isolation deadlines and noticing SIGHUP and local_dir changes (signal handlers only run
in the main thread). `watched_sync` runs the work in a thread and tends to those every half
second until it ends; the work's exception, if any, is raised in the caller. Pings stop once
the work has run HANG_GRACE past its sync_timeout: a sync that really hangs is still what the
watchdog catches.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
TEND_EVERY = 0.5  # seconds between two rounds of tending while the work runs
HANG_GRACE = 300.0  # seconds past sync_timeout for the apply (nft, resolver: each bounded)


def watched_sync(work: Callable[[threading.Event], T], *, clock: Callable[[], float],
                 sync_timeout: float, ping: Callable[[], None], cut: Callable[[], bool],
                 also: Callable[[], None]) -> T:
    """`work(cancel)` in a thread. Meanwhile, in this thread: `ping()` (until the bound),
    `cancel` set once `cut()` is true (the downloads still to come are skipped), `also()`
    (isolation deadlines; its errors are its own to report)."""
    box: dict[str, Any] = {}
    cancel = threading.Event()

    def target() -> None:
        try:
            box["result"] = work(cancel)
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="sync", daemon=True)
    limit = clock() + sync_timeout + HANG_GRACE
    worker.start()
    while worker.is_alive():
        worker.join(timeout=TEND_EVERY)
        if not worker.is_alive():
            break
        if clock() < limit:
            ping()
        if cut():
            cancel.set()
        with contextlib.suppress(Exception):
            also()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result
