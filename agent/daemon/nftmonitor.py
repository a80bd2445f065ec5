"""`nft monitor elements` as a stream of element events for the kernel watcher.

Why a subprocess and not a netlink socket of our own: it runs through the same command prefix
as every other nft call (`ip netns exec NS nft` in the lab), so it watches the namespace the
agent enforces in. Measured on nft 1.0.6: it starts at once whatever the set sizes (plain `nft
monitor` takes ~30 s with a million elements), prints one line per element, for changes made by
others and by us alike, about 100k lines a second, and `# ERROR: We lost some netlink events!`
when the kernel dropped some (its socket buffer overflowed: a full reload of 1M elements).
Elements that expire by timeout print nothing.

The text also parses the agent's own rendered `add element` lines (agent.render), so what the
agent wants and what the kernel reports are read by one function.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

log = logging.getLogger(__name__)

LOST = "# ERROR: We lost some netlink events!"
_LINE = re.compile(r"^(add|delete) element inet (\S+) (\S+) \{ (.*) \}\s*$")
RESTART_MIN, RESTART_MAX = 0.2, 10.0  # seconds between restarts of a monitor that died


class Event(NamedTuple):
    op: str     # "add" or "delete"
    set: str
    value: str  # as nft wrote it, unquoted: an address, a prefix, a range, an interface name
    text: str   # the element as nft wrote it, options included ("wan0" timeout 2h ...)


def split_elements(body: str) -> list[str]:
    """The elements of `{ a, b timeout 2h, "if,name" }`, commas inside quotes kept."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    out.append("".join(current).strip())
    return [e for e in out if e]


def canonical(token: str) -> str:
    """One spelling per element: addresses and prefixes as Python writes them (nft's IPv6
    text can differ), anything else as it is. Costly (~3 us): used on small sets, and on a
    big set's value only when its plain spelling is not found."""
    try:
        if "/" in token:
            return str(ipaddress.ip_network(token, strict=False))
        if "-" not in token:
            return str(ipaddress.ip_address(token))
    except ValueError:
        pass
    return token


def _first_token(element: str) -> str:
    if element.startswith('"'):
        end = element.find('"', 1)
        return element[:end + 1] if end > 0 else element
    return element.split(" ", 1)[0]


def parse(line: str, table: str) -> list[Event]:
    """The events of one monitor (or rendered) line about inet `table`; [] for anything else."""
    match = _LINE.match(line)
    if match is None or match.group(2) != table:
        return []
    op, _, set_name, body = match.groups()
    return [Event(op, set_name, _first_token(e).strip('"'), e) for e in split_elements(body)]


def elements(lines: Sequence[str], table: str) -> dict[str, dict[str, str]]:
    """set -> {canonical value: element text} of rendered `add element` statements."""
    out: dict[str, dict[str, str]] = {}
    for line in lines:
        for event in parse(line, table):
            out.setdefault(event.set, {})[canonical(event.value)] = event.text
    return out


class ElementMonitor:
    """The subprocess and the thread reading it; restarted with backoff when it dies.

    `on_events(events, lost)` is called from the reading thread for each line that matters:
    `lost` is True for nft's lost-events line, and for a restart (events of the gap are gone).
    """

    def __init__(self, command: Sequence[str], table: str,
                 on_events: Callable[[list[Event], bool], None]) -> None:
        self.argv = ["stdbuf", "-oL", *command, "monitor", "elements"]
        self.table = table
        self.on_events = on_events
        self.proc: subprocess.Popen[str] | None = None
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.thread: threading.Thread | None = None
        self.restarts = 0
        self.started = threading.Event()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="nft-monitor", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._kill()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def pause(self) -> None:
        """Stop listening until resume(): the caller answers for the gap (a full reload, or a
        flood it attributes to a commit of ours). Measured: a full reload of 1M elements takes
        8 s with no listener, 25 s with this monitor listening, 12 s with it stopped."""
        self.paused.set()
        self._kill()

    def resume(self) -> None:
        self.paused.clear()

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()

    def _run(self) -> None:
        delay = RESTART_MIN
        first = True
        resumed = False
        while not self.stopping.is_set():
            if self.paused.is_set():
                resumed = True
                time.sleep(0.02)
                continue
            began = time.monotonic()
            try:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             text=True, bufsize=1)
            except OSError as exc:
                log.error("cannot start %s: %s", " ".join(self.argv), exc)
            else:
                if not first and not resumed:
                    self.on_events([], True)  # whatever changed while it was down is unknown
                first = False
                resumed = False
                self.started.set()
                self._read(self.proc)
                self.proc.wait()
            if self.stopping.is_set():
                break
            if self.paused.is_set():
                continue
            self.restarts += 1
            delay = RESTART_MIN if time.monotonic() - began > 30 else min(delay * 2, RESTART_MAX)
            log.warning("nft monitor exited (%s); restarting in %.1f s",
                        self.proc.returncode if self.proc else "not started", delay)
            self.stopping.wait(delay)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(LOST):
                self.on_events([], True)
                continue
            events = parse(line, self.table)
            if events:
                self.on_events(events, False)
