"""Durations and sizes as operators write them, shared by the configuration file and the command
line (`refresh: 15m`, `max_size: 256MiB`, `--for 2h`, `--expires 7d`)."""

from __future__ import annotations

import re

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(?:[0-9]+ *[smhdw] *)+")
_DURATION_PART = re.compile(r"([0-9]+) *([smhdw])")
_DIGITS = re.compile(r"[0-9]+")
# Longer than this is a typo, and would overflow time arithmetic (sleep, datetime) downstream.
MAX_DURATION = 100 * 365 * 86400
DURATION_HINT = "write 30s, 15m, 2h or 7d"

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"([0-9]+) *([A-Za-z]*)")
SIZE_HINT = "write 64KiB, 256MiB, 1GiB or a number of bytes"


def parse_duration(text: str | int) -> int:
    """Seconds from "30s", "15m", "2h", "7d", "1w", "1h30m" or a bare number of seconds.

    Units are lowercase only, so that "1M" (month? minute?) is refused rather than guessed. The
    ValueError message is complete, written for an operator: the CLI prints it as is.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"not a duration ({text!r}); {DURATION_HINT}")
    if isinstance(text, int):
        seconds = text
    else:
        value = text.strip()
        if _DIGITS.fullmatch(value):
            seconds = int(value)
        elif _DURATION_RE.fullmatch(value):
            seconds = sum(
                int(number) * _DURATION_UNITS[unit]
                for number, unit in _DURATION_PART.findall(value)
            )
        else:
            raise ValueError(f"not a duration ({text!r}); {DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative ({text!r}); {DURATION_HINT}")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration longer than 100 years ({text!r}); {DURATION_HINT}")
    return seconds


def parse_size(text: str | int) -> int:
    """Bytes from "64KiB", "256MiB", "1GiB" (powers of 1024), "10MB" (powers of 1000) or bytes.

    A bare "K", "M" or "G" is refused: whether it means 1000 or 1024 is exactly the kind of doubt
    that turns a size cap into a surprise.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"not a size ({text!r}); {SIZE_HINT}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative ({text!r}); {SIZE_HINT}")
        return text
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size ({text!r}); {SIZE_HINT}")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}; {SIZE_HINT}")
    return int(number) * factor
