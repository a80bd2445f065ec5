"""A sync in a worker thread, watched by the daemon's main thread.

While a download or an apply runs, the main thread must go on feeding systemd's watchdog,
lifting isolation deadlines and noticing SIGHUP and local_dir changes (signal handlers only run
in the main thread). `watched` runs the work in a thread and calls `tend` every half second
until it ends; the work's exception, if any, is raised in the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
TEND_EVERY = 0.5  # seconds between two calls of `tend` while the work runs


def watched(work: Callable[[], T], tend: Callable[[], None]) -> T:
    """`work()` in a thread; `tend()` meanwhile, in this thread; its result or exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="sync", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=TEND_EVERY)
        if worker.is_alive():
            tend()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result
