"""Talking to systemd: sd_notify (READY, STATUS, WATCHDOG, STOPPING) and structured journal entries.

python3-systemd does the work when it is installed (the .deb depends on it). The fallbacks keep
the daemon usable without it (a container, a developer's virtualenv): sd_notify is a single
datagram to $NOTIFY_SOCKET, simple enough to send by hand, and journal entries become log lines
with their fields appended, so nothing an operator needs is lost.

Every function here is best effort: failing to tell systemd something must never stop the
agent from enforcing (systemd notices a silent daemon through the watchdog anyway).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from agent.util.escape import protect_handlers, shown

log = logging.getLogger(__name__)
IDENTIFIER = "blocklist-agent"
_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
               logging.CRITICAL: 2}


def _socket_notify(state: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to the socket named in $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address  # '@': abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a stuck listener must not stop the agent
            sock.sendto(state.encode(), target)
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def _systemd_notify() -> Callable[[str], bool] | None:
    try:
        from systemd import daemon
    except ImportError:
        return None

    def send(state: str) -> bool:
        try:
            return bool(daemon.notify(state))
        except (OSError, ValueError) as exc:
            log.debug("sd_notify failed: %s", exc)
            return False

    return send


_notify = _systemd_notify() or _socket_notify


def notify(*assignments: str) -> bool:
    """Send `READY=1`, `STATUS=…`, … in one message; False when not run by systemd."""
    # a STATUS= text may quote a server's words: one line, no control characters, or a line
    # break in it would send systemd an assignment of the server's choosing (READY=1, ...)
    state = "\n".join("STATUS=" + shown(a[7:].replace("\n", " ")) if a.startswith("STATUS=") else a
                      for a in assignments)
    return _notify(state)


def use_fallback(enabled: bool) -> None:
    """Force the socket fallback (tests prove it works like python3-systemd)."""
    global _notify
    _notify = _socket_notify if enabled else (_systemd_notify() or _socket_notify)


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings systemd wants (half its WatchdogSec), or None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):  # meant for another process (e.g. our parent)
        return None
    return int(usec) / 2e6


# --- the journal ----------------------------------------------------------------------------

def journal_connected() -> bool:
    """True when stderr is the journal (JOURNAL_STREAM matches it), as systemd documents."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class Journal:
    """Events with fields (FEED=, SERIAL=, ACTION=, RESULT=, …) for `journalctl FEED=x`.

    `send` is systemd.journal.send when stderr is the journal; otherwise (or without
    python3-systemd) events are plain log lines with the fields appended.
    """

    def __init__(self, send: Callable[..., Any] | None = None) -> None:
        self.send = send

    @classmethod
    def auto(cls) -> Journal:
        if not journal_connected():
            return cls()
        try:
            from systemd import journal
        except ImportError:
            return cls()
        return cls(journal.send)

    def event(self, level: int, message: str, **fields: object) -> None:
        values = {k.upper(): shown(v) for k, v in fields.items() if v is not None}
        message = shown(message, newlines=True)
        if self.send is not None:
            try:
                self.send(message, PRIORITY=str(_PRIORITIES.get(level, 6)),
                          SYSLOG_IDENTIFIER=IDENTIFIER, **values)
                return
            except (OSError, ValueError) as exc:
                log.debug("journal send failed (%s); logging instead", exc)
        log.log(level, "%s%s", message, _suffix(values))


def _suffix(fields: Mapping[str, str]) -> str:
    if not fields:
        return ""
    return " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"


def journal_logging(level: int) -> None:
    """Send the agent's log records to the journal with their priority, when it is stderr."""
    if not journal_connected():
        return
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER))
    protect_handlers(root)
    root.setLevel(level)
