"""`nft monitor elements` as a stream of element events for the kernel watcher.

Why a subprocess and not a netlink socket of our own: it runs through the same command prefix
as every other nft call (`ip netns exec NS nft` in the lab), so it watches the namespace the
agent enforces in. Measured on nft 1.0.6: it prints one line per element, for changes made by
others and by us alike (a full reload too: every element of the new table), about 100k lines a
second, and `# ERROR: We lost some netlink events!` when the kernel dropped some (its socket
buffer overflowed). Elements that expire by timeout print nothing. At start it loads nft's cache,
elements included, and prints nothing meanwhile: instant on a small table, 2.5 s with 200k
elements (plain `nft monitor`: ~30 s with a million).

The text also parses the agent's own rendered `add element` lines (agent.render), so what the
agent wants and what the kernel reports are read by one function.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
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
READ_SIZE = 1 << 16
RESTART_MIN, RESTART_MAX = 0.2, 10.0  # seconds between restarts of a monitor that died


class Event(NamedTuple):
    op: str     # "add" or "delete"
    set: str
    value: str  # as nft wrote it, unquoted: an address, a prefix, a range, an interface name
    text: str   # the element as nft wrote it, options included ("wan0" timeout 2h ...)


def split_elements(body: str) -> list[str]:
    """The elements of `{ a, b timeout 2h, "if,name" }`, commas inside quotes kept."""
    if '"' not in body:  # the usual case, and a flood's: no character loop
        return [e for e in (part.strip() for part in body.split(",")) if e]
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
    words = line.split(" ", 5)
    if len(words) == 6 and words[3] == table and words[1] == "element" and \
            words[0] in ("add", "delete") and words[2] == "inet" and \
            words[5].startswith("{ ") and "," not in words[5] and '"' not in words[5]:
        # one plain element, as nft monitor prints them: `add element inet T SET { VALUE }`
        element = words[5].strip()[2:-2].strip()
        return [Event(words[0], words[4], element.split(" ", 1)[0], element)]
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
    `lost` is True for nft's lost-events line, and after a restart (the gap's events are gone).

    Measured with 200k elements: a new `nft monitor elements` first loads nft's cache, elements
    included (2.5 s; proportionally longer with more), and prints nothing of what happens
    meanwhile, so it is never restarted on purpose: pause() stops it with SIGSTOP (the kernel
    then drops its events, as when its buffer overflows) and resume() lets it go on.
    """

    def __init__(self, command: Sequence[str], table: str,
                 on_events: Callable[[list[Event], bool], None]) -> None:
        self.argv = ["stdbuf", "-oL", *command, "monitor", "elements"]
        self.table = table
        self.on_events = on_events
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.restarts = 0
        self.started = threading.Event()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="nft-monitor", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        if self.thread is not None:
            self.thread.join(timeout=5)

    def pause(self) -> None:
        """Stop listening until resume(); the caller answers for the events dropped meanwhile.
        Measured: a full reload of 1M elements takes 8 s with no listener, 25 s with this
        monitor reading, 12 s with it stopped."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signum)  # its own session: `ip netns exec` and nft alike

    def _run(self) -> None:
        delay = RESTART_MIN
        gap = False  # the previous monitor died by itself: what happened meanwhile is unknown
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, bufsize=0, start_new_session=True)
            except OSError as exc:
                log.error("cannot start %s: %s", " ".join(self.argv), exc)
                self.proc = None
            if self.proc is not None:
                log.debug("nft monitor started (pid %d)", self.proc.pid)
                if gap:
                    self.on_events([], True)
                self.started.set()
                self._read(self.proc)
                self.proc.wait()
            if self.stopping.is_set():
                break
            gap = True
            self.restarts += 1
            delay = RESTART_MIN if time.monotonic() - began > 30 else min(delay * 2, RESTART_MAX)
            log.warning("nft monitor exited (%s); restarting in %.1f s",
                        self.proc.returncode if self.proc else "not started", delay)
            self.stopping.wait(delay)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """Whatever the pipe holds, at once: one call per read, not per line (a flood drains
        at ~100k lines a second instead of ~40k)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        tail = b""
        while True:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                return
            *lines, tail = (tail + chunk).split(b"\n")
            events: list[Event] = []
            lost = False
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith(LOST):
                    lost = True
                else:
                    events += parse(line, self.table)
            if events or lost:
                self.on_events(events, lost)
