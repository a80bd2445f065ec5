"""The daemon in the lab's gateway namespace, for the tests of its kernel watcher.

`gateway(lab, root)` writes a configuration (nftables in ns gw, a file:// feed signed with a
fresh key, a metrics file, an isolation allowlist), publishes the feed, starts the real daemon
(`python -m agent run`) inside ns gw with sd_notify on a path socket (an abstract socket would
stay in the test's own network namespace) and stops it with SIGTERM at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.publish import minisign, publish
from lab import HTTP_PORT, Lab

TABLE = "blocklist_agent"
ROOT = Path(__file__).resolve().parents[2]
LIMIT = 2.0  # seconds, the promise
TIMES: dict[str, float] = {}


class Notifications:
    """A path socket (abstract ones are per network namespace) the daemon's sd_notify reaches."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ba-repair-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                self.messages.append(self.sock.recv(65536).decode())

    def statuses(self) -> list[str]:
        return [line[7:] for m in list(self.messages) for line in m.splitlines()
                if line.startswith("STATUS=")]

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=2)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)


@dataclass
class Gateway:
    lab: Lab
    root: Path
    key: minisign.SecretKey
    notes: Notifications
    proc: subprocess.Popen[str] | None = None
    err: list[str] = field(default_factory=list)
    serial: int = 0
    extra: list[str] = field(default_factory=list)  # more addresses in every publication

    @property
    def config(self) -> Path:
        return self.root / "agent.yaml"

    def publish(self, *lines: str) -> None:
        self.serial += 1
        payload = self.root / "src" / "indicators.txt"
        payload.parent.mkdir(exist_ok=True)
        payload.write_text("\n".join([*lines, *self.extra]) + "\n")
        publish([payload], out_dir=self.root / "feed", key=self.key, publisher="lab CERT",
                serial=self.serial, expires=timedelta(days=1),
                now=datetime.now(UTC) - timedelta(minutes=1))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.lab.run("gw", sys.executable, "-m", "agent", "-c", str(self.config), *args,
                            check=False, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", "nft", *args, check=check)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "WATCHDOG_USEC")}
        env.update(NOTIFY_SOCKET=self.notes.path, PYTHONPATH=str(ROOT))
        debug = ["--debug"] if os.environ.get("BA_DEBUG") else []  # the watcher's own account
        self.proc = self.lab.spawn("gw", sys.executable, "-m", "agent", "-c", str(self.config),
                                   *debug, "run", cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._stderr, daemon=True).start()
        wait_for(lambda: any("READY=1" in m for m in self.notes.messages), 300, "READY=1")
        wait_for(lambda: "nft monitor elements" in self.children(), 10, "the kernel watcher")
        time.sleep(0.3)  # the monitor subprocess is listening

    def monitor_idle(self, quiet: float = 1.0, timeout: float = 120) -> None:
        """Until `nft monitor` used no CPU for `quiet` seconds: the events of the daemon's own
        start-up reload are drained (a repair measured before would wait for them)."""
        pid = int(next(line.split()[0] for line in self.children("pid,args").splitlines()
                       if "nft monitor" in line))

        def cpu() -> int:  # -1 while stopped (SIGSTOP: waiting for a commit to end)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return -1 if fields[0] == "T" else int(fields[11]) + int(fields[12])

        started = time.monotonic()
        last, since = cpu(), time.monotonic()
        while time.monotonic() - since < quiet:
            assert time.monotonic() - started < timeout, "nft monitor never went quiet"
            time.sleep(0.1)
            now = cpu()
            if now != last or now < 0:
                last, since = now, time.monotonic()

    def children(self, fields: str = "args") -> str:
        return self.lab.run("gw", "ps", "-o", f"{fields}=", "--ppid", str(self.daemon_pid()),
                            check=False).stdout

    def daemon_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # `ip netns exec` execs the command: same pid

    def _stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def repairs(self) -> list[str]:
        return [line for line in self.err if "ACTION=repair" in line]

    def table_present(self) -> bool:
        return self.nft("list", "table", "inet", TABLE, check=False).returncode == 0

    def present(self, set_name: str, value: str) -> bool:
        """The read-only probe: `-c create` fails with "File exists" when it is there."""
        proc = self.nft("-c", "create", "element", "inet", TABLE, set_name, f"{{ {value} }}",
                        check=False)
        return proc.returncode != 0 and "exists" in proc.stderr

    def iso_wan(self) -> list[str]:
        proc = self.nft("-j", "list", "set", "inet", TABLE, "iso_wan", check=False)
        if proc.returncode:
            return []
        items = json.loads(proc.stdout)["nftables"]
        elems = next((i["set"].get("elem", []) for i in items if "set" in i), [])
        return [e["elem"]["val"] if isinstance(e, dict) else e for e in elems]

    def reach(self, dst: str, src: str = "lan1", timeout: float = 0.5) -> bool:
        return self.lab.tcp_probe(src, self.lab.addr[dst], HTTP_PORT, timeout=timeout)

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in (self.root / "metrics.prom").read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float = 0.01
             ) -> float:
    """Seconds until `check()` holds; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


def measured(g: Gateway, name: str, seconds: float, limit: float = LIMIT) -> None:
    TIMES[name] = seconds
    print(f"\nrepair time, {name}: {seconds * 1000:.0f} ms")
    assert seconds < limit, (f"{name}: repaired in {seconds:.2f} s (limit {limit:.1f} s); "
                             "the daemon said:\n" + "\n".join(g.err[-30:]))



CONFIG = """
state_dir: state
local_dir: local.d
metrics_file: {metrics}
feeds:
  - name: lab-cert
    url: {feed}
    trusted_keys: ["{key}"]
guards:
  max_change: 0.9
  protected: [10.10.0.0/16]
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [wan0]
  management: [10.10.99.0/24, fd00:10:99::/64]
dns:
  backend: none
isolation:
  allow: [203.0.113.20]
"""


@contextlib.contextmanager
def gateway(lab: Lab, root: Path, extra: Sequence[str] = ()) -> Iterator[Gateway]:
    """The daemon running in ns gw, enforcing the C2s, a bad prefix and `extra` addresses."""
    pub, key = minisign.generate_keypair()
    (root / "agent.yaml").write_text(CONFIG.format(
        metrics=root / "metrics.prom", feed=(root / "feed" / "manifest.json").as_uri(),
        key=pub.to_text()))
    notes = Notifications()
    g = Gateway(lab, root, key, notes, extra=list(extra))
    g.publish(lab.addr["c2"], lab.addr["c26"], "192.0.2.0/24", "2001:db8:bad::/48")
    try:
        g.start()
        total = 4 + len(extra)  # the first sync refreshes the feed, after READY=1
        wait_for(lambda: any(s.startswith(f"enforcing {total} entries")
                             for s in notes.statuses()), 300, f"STATUS=enforcing {total}")
        g.monitor_idle()
        yield g
    finally:
        g.stop()
        notes.close()
        if TIMES:
            print("\nmeasured repair times: " + ", ".join(
                f"{k} {v * 1000:.0f} ms" for k, v in TIMES.items()))
            TIMES.clear()
