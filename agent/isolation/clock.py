"""The kill switch's clocks: the wall clock for what people read, the boot's own clock for
deadlines.

A `--for` deadline is an element timeout in the kernel, which counts it on the kernel's own
clock; the wall clock can jump (NTP after a dead RTC, an operator's `date -s`, faketime in a
test) without moving it. So the record keeps, beside the wall-clock deadline shown to people,
the boot it was made in (`/proc/sys/kernel/random/boot_id`) and the deadline in seconds since
that boot (`/proc/uptime`, which neither `date -s` nor faketime changes): in the same boot,
"is the time up?" is answered without the wall clock; in another boot, by the time the kernel
or the boot file says is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
UPTIME = Path("/proc/uptime")


@dataclass(frozen=True)
class Clock:
    wall: int          # seconds since the epoch (shown, recorded; never decides a deadline)
    boot_id: str       # "" when unknown (no /proc): deadlines then follow the kernel only
    uptime: float      # seconds since this boot


def boot_id(path: Path = BOOT_ID) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return ""


def uptime(path: Path = UPTIME) -> float:
    try:
        return float(path.read_text(encoding="ascii").split()[0])
    except (OSError, UnicodeError, ValueError, IndexError):
        return 0.0


def read_clock() -> Clock:
    return Clock(wall=int(time.time()), boot_id=boot_id(), uptime=uptime())
