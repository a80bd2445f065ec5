"""What the DNS backends share: their control commands, the zone file installer, the
blocklist fingerprint and the record of what the resolver was last given (`dns.json`).

The installer exists because resolvers are unforgiving with zone files. Measured with Debian
12's Unbound: a zone file with one bad line, reloaded, leaves the zone *half loaded* (the
records before the error, nothing after it) and Knot Resolver silently skips bad lines. So a
new zone is written beside the served one, checked (the agent's own check, then optionally an
external checker such as `named-checkzone`), and only then renamed over it; the previous file is
kept as `ZONEFILE.last-good`, and if the resolver still fails to load the new one the last good
file is put back and reloaded. A zone that fails its check is kept as `ZONEFILE.rejected` for
the operator to inspect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.errors import ApplyError
from agent.merge import SET_NAMES, Blocklist
from agent.plan import SetChange
from agent.state import StateStore
from agent.util.command import DEFAULT_TIMEOUT, Failure, run
from agent.util.fsutil import atomic_write, fsync_dir, tmp_name

log = logging.getLogger(__name__)


class Command:
    """One external command (unbound-control, rndc, named-checkzone), with a command prefix
    that can be injected: a test or the lab puts `ip netns exec NS` in front, an operator
    puts `-c /etc/unbound/unbound.conf` behind (like agent.backends.nft_exec.Nft)."""

    def __init__(self, command: Sequence[str], *, package: str,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if not command:
            raise ValueError("empty command")
        self.command = list(command)
        self.package = package
        self.timeout = timeout

    def __str__(self) -> str:
        return " ".join(self.command)

    def run(self, *args: str) -> str:
        """Run it; its stdout, or ApplyError saying what it printed and what to do."""
        return run([*self.command, *args], timeout=self.timeout, failure=Failure(
            family="dns-command",
            missing_hint=f"install the {self.package} package, or fix dns.control / dns.check "
            "in the configuration",
            timeout_hint="check that the resolver is running and not overloaded",
            failed_hint="see the message above; the resolver keeps the last good zone"))


# --- the agent's own zone check ---------------------------------------------------------------

_NAME = r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}"
_VALID_LINE = (
    r"; [^\n]*"
    r"|\$ORIGIN " + _NAME + r"\."
    r"|\$TTL \d{1,10}"
    r"|@ SOA localhost\. hostmaster\.localhost\. \d{1,10}(?: \d{1,10}){4}"
    r"|@ NS localhost\."
    r"|(?:\*\.)?" + _NAME + r" (?:CNAME (?:\*?\.|" + _NAME + r"\.)"
    r"|A \d{1,3}(?:\.\d{1,3}){3}|AAAA [0-9a-f:.]{2,45})"
)
_BAD_LINE = re.compile(r"^(?!(?:" + _VALID_LINE + r")$).*$", re.MULTILINE)
_SOA = re.compile(r"^@ SOA \S+ \S+ (\d+) ", re.MULTILINE)


def check_zone_text(text: str, zone: str, serial: int) -> None:
    """Prove a rendered zone is made only of the lines the renderer writes, with one SOA of
    the expected serial; one C-speed regex scan (under a second for a million lines).

    Catches a renderer bug or a damaged file before a resolver half-loads it.
    """
    problem = ""
    if not text.endswith("\n"):
        problem = "it does not end with a newline (truncated?)"
    elif not text.startswith("; RPZ zone rendered by blocklist-agent") or \
            f"\n$ORIGIN {zone}\n" not in text[:300]:
        problem = f"it does not start with the agent's header and $ORIGIN {zone}"
    else:
        soas = _SOA.findall(text)
        bad = _BAD_LINE.search(text[:-1])
        if bad is not None:
            line = text.count("\n", 0, bad.start()) + 1
            problem = f"line {line} is not a record the agent writes: {bad.group()[:80]!r}"
        elif soas != [str(serial)]:
            problem = f"expected one SOA with serial {serial}, found {soas[:3]}"
    if problem:
        raise ApplyError(
            f"the new RPZ zone {zone} failed the agent's check: {problem}",
            hint="the resolver keeps serving the last good zone; this is a bug in "
            "blocklist-agent, please report it with the zone file kept beside it (.rejected)",
            reason="dns-zone-check",
        )


# --- installing a zone file -------------------------------------------------------------------


def _link_over(source: Path, target: Path) -> None:
    """Make `target` another name of `source`'s file, atomically (no copy of a big zone)."""
    tmp = tmp_name(target)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.link(source, tmp)
    os.replace(tmp, target)
    # rename(2) of two names of one file does nothing and keeps both: when `target` already
    # was `source` (a sync that failed before the swap), the temp name would stay for ever
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def install_zone(path: Path, text: str, *, zone: str, serial: int, check: Command | None,
                 reload: Callable[[], None], confirm: Callable[[], None] | None = None) -> None:
    """Write, check, swap in, load and `confirm` (is the new serial served?) a zone file; on
    any failure the last good one stays (or is put back and loaded again) and ApplyError says
    what happened."""
    new = path.with_name(path.name + ".new")
    rejected = path.with_name(path.name + ".rejected")
    last_good = path.with_name(path.name + ".last-good")
    try:
        atomic_write(new, text.encode())
    except OSError as exc:
        raise ApplyError(f"cannot write the RPZ zone: {exc.strerror}", where=str(new),
                         hint="check dns.zonefile and that its directory is writable by the "
                         "agent (ReadWritePaths= in the systemd unit)",
                         reason="dns-zone-write") from None
    try:
        check_zone_text(text, zone, serial)
        if check is not None:
            check.run(zone.rstrip("."), str(new))
    except ApplyError as exc:
        os.replace(new, rejected)
        exc.hint = (f"the resolver keeps serving the last good zone; the rejected zone is "
                    f"kept in {rejected}. " + exc.hint)
        raise
    had_previous = path.exists()
    if had_previous:
        _link_over(path, last_good)
    os.replace(new, path)
    fsync_dir(path.parent)
    try:
        reload()
        if confirm is not None:
            confirm()
    except ApplyError as exc:
        if not had_previous:
            raise
        _link_over(last_good, path)
        os.utime(path)  # newer than the failed load, or BIND answers "up-to-date" and keeps it
        fsync_dir(path.parent)
        if exc.reason.endswith("-timeout"):  # a hung resolver: a second wait would hang too
            exc.hint = (f"the last good zone was put back ({path}); the resolver did not answer, "
                        f"so it was not asked to reload it. {exc.hint}")
            raise
        try:
            reload()
            exc.hint = f"the last good zone was put back and reloaded. {exc.hint}"
        except ApplyError as again:
            log.error("reloading the last good zone failed too: %s", again)
            exc.hint = (f"the last good zone was put back ({path}) but reloading it failed "
                        f"too: {again.what}. Check the resolver. {exc.hint}")
        raise


# --- fingerprints of a blocklist -------------------------------------------------------------

def _set_sum(name: str, values: Iterable[str]) -> int:
    seed = zlib.crc32(name.encode())
    return sum(zlib.crc32(v.encode(), seed) for v in values)


def fingerprint(blocklist: Blocklist) -> str:
    """An order-independent digest of a blocklist (per set: count and sum of CRCs).

    Additive, so the digest of the plan's baseline follows from the new blocklist's and the
    change's; one pass over a million values costs about 0.3 s.
    """
    return " ".join(f"{len(values)}:{_set_sum(name, values):x}"
                    for name, values in zip(SET_NAMES, blocklist, strict=True))


def fingerprint_before(after_digest: str, changes: Mapping[str, SetChange]) -> str:
    """The fingerprint of the blocklist the plan was made against."""
    return _shifted(after_digest, changes, -1)


def fingerprint_after(before_digest: str, changes: Mapping[str, SetChange]) -> str:
    """The fingerprint of the plan's result, from its baseline's: the cost of the change."""
    return _shifted(before_digest, changes, 1)


def _shifted(digest: str, changes: Mapping[str, SetChange], sign: int) -> str:
    parts = []
    for name, part in zip(SET_NAMES, digest.split(), strict=True):
        count, _, total = part.partition(":")
        change = changes.get(name, SetChange(frozenset(), frozenset(), 0, 0))
        n = int(count) + sign * (len(change.added) - len(change.removed))
        s = int(total, 16) + sign * (_set_sum(name, change.added) - _set_sum(name, change.removed))
        parts.append(f"{n}:{s:x}")
    return " ".join(parts)


def recorded_digest(state: Mapping[str, Any], generation: int) -> str | None:
    """The fingerprint the resolver was last given, if that was the applied record's list
    (`generation` is this sync's: the record holds the one before); None: compute it."""
    digest = state.get("fingerprint")
    if state.get("generation") != generation - 1 or not isinstance(digest, str) or len(
            digest.split()) != len(SET_NAMES):
        return None
    return digest


def holds_record(state: Mapping[str, Any], settings: Mapping[str, Any], generation: int) -> bool:
    """Does dns.json say the resolver was given exactly the applied record (`generation`),
    with these settings? (The caller still asks the resolver for the serial: the truth.)"""
    return (state.get("generation") == generation and state.get("in_sync", True) is True
            and all(state.get(k) == v for k, v in settings.items()))


# --- what the resolver was last given ---------------------------------------------------------


def load_state(state_dir: str | Path) -> dict[str, Any]:
    """The DNS backend's record (`dns.json`), {} if there is none or it is unreadable."""
    return StateStore(state_dir).load_dns_record()


def save_state(store: StateStore, data: dict[str, Any]) -> None:
    record = {**data, "updated_at": int(time.time())}
    store.save_dns_record(record)
