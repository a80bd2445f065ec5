"""The one runner of external programs (nft, unbound-control, rndc, named-checkzone, ip).

Every call has a deadline and its failures become `ApplyError`s that name the command, what it
printed and what to do, with a reason code of the caller's family (`nft-*`, `dns-command-*`).

The deadlines fit inside the service's watchdog (WatchdogSec=3min): a resolver that hangs (a
SIGSTOPped Unbound accepts its control connection and never answers) costs one failed apply,
never a watchdog kill in the middle of a sync, again after each restart.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import ApplyError

DEFAULT_TIMEOUT = 30.0  # seconds: a resolver's control command answers in well under a second
NFT_TIMEOUT = 120.0  # seconds: a full reload of a million elements takes nft about 20 s
CHECK_TIMEOUT = 120.0  # seconds: named-checkzone reads a million-name zone in about 20 s


@dataclass(frozen=True)
class Failure:
    """What the caller says when its program is missing, too slow or fails."""

    family: str            # reason prefix: "nft" gives nft-missing, nft-timeout, nft-failed
    missing_hint: str
    timeout_hint: str
    failed_hint: str
    output_sep: str = "; "  # between the lines of output quoted in the failure message


def first_lines(text: str, count: int = 6, sep: str = "; ") -> str:
    """The first `count` non-blank lines of a program's output, joined by `sep`.

    Stripped when joined on one line; a `sep` that starts a new line keeps their indentation,
    because nft's error output marks the culprit with `^^^` under a column of the line above.
    """
    keep_indent = sep.startswith("\n")
    lines = [line if keep_indent else line.strip()
             for line in text.strip().splitlines() if line.strip()]
    return sep.join(lines[:count]) + (f"{sep}..." if len(lines) > count else "")


def _input_file(text: str) -> int:
    """`text` in an anonymous file in memory, at its start, for a child's standard input.

    A pipe would be fed by this process in 64 kB steps while the child reads, each step
    needing the interpreter's lock: a thread doing other work meanwhile (the boot files,
    during a 12 MB nft load) would slow the child down. A file in memory needs no feeding,
    and leaves nothing on disk whatever happens to this process."""
    fd = os.memfd_create("blocklist-agent-input", os.MFD_CLOEXEC)  # Linux >= 3.17
    with os.fdopen(os.dup(fd), "wb") as out:
        out.write(text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run(argv: Sequence[str], *, timeout: float, failure: Failure, input_text: str | None = None,
        shown: str | None = None, missing_reason: str | None = None) -> str:
    """Run `argv` to completion within `timeout` seconds; its stdout, or ApplyError."""
    shown = shown or " ".join(argv)
    stdin = _input_file(input_text) if input_text is not None else subprocess.DEVNULL
    try:
        proc = subprocess.run(list(argv), stdin=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise ApplyError(f"cannot run {argv[0]!r}: no such program", hint=failure.missing_hint,
                         reason=missing_reason or f"{failure.family}-missing") from None
    except subprocess.TimeoutExpired:
        raise ApplyError(f"`{shown}` did not finish in {timeout:.0f} s",
                         hint=failure.timeout_hint, reason=f"{failure.family}-timeout") from None
    finally:
        if input_text is not None:
            os.close(stdin)
    if proc.returncode != 0:
        output = first_lines(proc.stdout + proc.stderr, sep=failure.output_sep)
        raise ApplyError(f"`{shown}` failed (exit {proc.returncode}): {output or 'no output'}",
                         hint=failure.failed_hint, reason=f"{failure.family}-failed")
    return proc.stdout
