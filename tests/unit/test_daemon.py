"""The daemon (`blocklist-agent run`): scheduling against a real HTTP feed server, signals,
sd_notify on a real notify socket, the journal fields and the metrics file.

Two ways in: the `Daemon` object stepped with a fake monotonic clock (refresh intervals and
backoff in milliseconds instead of hours), and the real command in a child process, for what only
a process shows (signals, READY=1 ordering, watchdog pings, exit code). Backends are `none` or
in-memory: nothing here touches the host's firewall or resolver.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import isolation
from agent.backends.base import ApplyContext, Backend
from agent.daemon import notify
from agent.daemon.loop import Daemon, Interrupted
from agent.daemon.watch import DEBOUNCE
from agent.errors import ApplyError
from agent.merge import Blocklist
from agent.plan import Plan
from lab.httpserver import HttpServer, Reply
from tests.state_helpers import applied_sets

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class NotifySocket:
    """What systemd listens on: a datagram socket whose path goes into $NOTIFY_SOCKET.

    A thread reads it all the time, as systemd does: a full socket queue would block the sender.
    """

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.address = address
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                self.messages.append(self.sock.recv(4096).decode())

    def drain(self, timeout: float = 0.0) -> list[str]:
        """Every message so far (after waiting `timeout` seconds for stragglers)."""
        time.sleep(timeout)
        return list(self.messages)

    def wait_for(self, wanted: str, timeout: float = 20.0, after: int = 0) -> int:
        """Index of the first message (from `after` on) with a line starting with `wanted`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, message in enumerate(self.drain(0.02)[after:], after):
                if any(line.startswith(wanted) for line in message.splitlines()):
                    return index
        raise AssertionError(f"no {wanted!r} on the notify socket; got {self.messages}")

    def lines(self, prefix: str) -> list[str]:
        time.sleep(0.05)  # let the reader catch up with what was just sent
        return [line for m in self.drain() for line in m.splitlines() if line.startswith(prefix)]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    directory = tempfile.mkdtemp(prefix="ba-notify-")  # AF_UNIX paths are short (108 bytes)
    listener = NotifySocket(os.path.join(directory, "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    yield listener
    listener.close()
    with contextlib.suppress(OSError):
        os.unlink(listener.address)
        os.rmdir(directory)


def manifest_gets(server: HttpServer, feed: str) -> int:
    return len(server.requests_for(f"/{feed}/manifest.json"))


def make(config: Path, clock: Clock, **kwargs: Any) -> Daemon:
    kwargs.setdefault("watch", False)
    return Daemon(str(config), clock=clock, rand=lambda: 0.0, own_addresses=list, **kwargs)


class RecordingBackend(Backend):
    """An enforcement point in memory: what was applied, and whether anything was removed."""

    name = "recording"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.applied: list[int] = []
        self.removed = False

    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        if self.fail:
            raise ApplyError("nft -f failed: Error: Could not process rule", reason="nft-failed")
        self.applied.append(blocklist.total)
        return f"recorded {blocklist.total} entries"

    def __getattr__(self, name: str) -> Any:  # remove(), flush(), delete(), ...: never called
        if name.startswith(("remove", "flush", "delete", "clear", "stop")):
            self.removed = True
        raise AttributeError(name)


# --- refresh and backoff, with a fake clock -------------------------------------------------

def test_each_feed_is_refreshed_on_its_own_interval(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    publish("fast", "185.220.101.7\n", serial=1)
    publish("slow", "evil.example\n", serial=1)
    config = write_config({"name": "fast", "url": server.url("/fast/manifest.json"),
                           "refresh": "60s"},
                          {"name": "slow", "url": server.url("/slow/manifest.json"),
                           "refresh": "1h"})
    clock = Clock()
    daemon = make(config, clock)
    daemon.start()
    assert server.requests == []  # start-up enforces from the state dir, no network
    daemon.step()
    assert (manifest_gets(server, "fast"), manifest_gets(server, "slow")) == (1, 1)
    assert enforced()["v4"] == ["185.220.101.7"] and enforced()["names"] == ["evil.example"]

    publish("fast", "185.220.101.8\n", serial=2)
    clock.advance(59)
    daemon.step()
    assert manifest_gets(server, "fast") == 1  # not due yet
    clock.advance(1)
    daemon.step()
    assert manifest_gets(server, "fast") == 2
    assert manifest_gets(server, "slow") == 1
    assert enforced()["v4"] == ["185.220.101.8"]
    assert enforced()["names"] == ["evil.example"]  # the slow feed's last good copy stays

    for _ in range(59):
        clock.advance(60)
        daemon.step()
    assert manifest_gets(server, "fast") == 61
    assert manifest_gets(server, "slow") == 2  # once more, after its hour
    # an unchanged feed is a conditional request
    assert server.requests_for("/slow/manifest.json")[-1].header("If-None-Match")


def test_a_failing_feed_backs_off_exponentially_and_recovers(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    enforced: Callable[[], dict[str, list[str]]], state_dir: Path,
) -> None:
    publish("good", "185.220.101.7\n", serial=1)
    config = write_config({"name": "good", "url": server.url("/good/manifest.json"),
                           "refresh": "60s"},
                          {"name": "bad", "url": server.url("/bad/manifest.json"),
                           "refresh": "15m"}, guards={"max_change": 1.0})
    clock = Clock()
    daemon = make(config, clock)
    daemon.start()
    start = clock.now
    attempts = []
    for _ in range(500):
        before = manifest_gets(server, "bad")
        daemon.step()
        if manifest_gets(server, "bad") > before:
            attempts.append(clock.now - start)
        clock.advance(1)
    assert attempts == [0, 30, 90, 210, 450]  # 30 s, doubling
    assert manifest_gets(server, "good") == 9  # meanwhile the good feed keeps its interval
    # status.json shows the failing feed's real last attempt, also after syncs that skipped it
    feed = json.loads((state_dir / "status.json").read_text())["feeds"]["bad"]
    assert feed["failures"] == 5
    assert feed["error"]["reason"] == "http-404"
    assert feed["last_attempt"] is not None

    publish("bad", "evil.example\n", serial=1)  # the publisher fixes it
    while manifest_gets(server, "bad") == 5:
        clock.advance(1)
        daemon.step()
    assert enforced()["names"] == ["evil.example"]
    assert json.loads((state_dir / "status.json").read_text())["feeds"]["bad"]["failures"] == 0
    fixed_at = clock.now
    while manifest_gets(server, "bad") == 6:
        clock.advance(1)
        daemon.step()
    assert clock.now - fixed_at == 900  # back to its refresh interval


def test_a_failed_apply_keeps_the_daemon_running_and_ready_waits_for_enforcement(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    notify_socket: NotifySocket,
) -> None:
    publish("feed", "185.220.101.7\n", serial=1)
    config = write_config({"name": "feed", "url": server.url("/feed/manifest.json"),
                           "refresh": "60s"})
    backend = RecordingBackend(fail=True)
    clock = Clock()
    daemon = make(config, clock, backends=lambda _config: [backend])
    daemon.start()
    daemon.reload("SIGHUP", forced=True)  # a reload must not claim READY either
    daemon.step()  # downloads the feed; the apply fails again
    assert manifest_gets(server, "feed") == 1
    assert notify_socket.lines("READY=1") == []  # nothing enforced: not ready
    assert any("apply failed" in s for s in notify_socket.lines("STATUS="))
    clock.advance(29)
    daemon.step()
    assert manifest_gets(server, "feed") == 1
    backend.fail = False  # e.g. the nftables module got loaded
    clock.advance(1)
    daemon.step()
    assert manifest_gets(server, "feed") == 2  # fetched again: nothing was recorded before
    assert backend.applied == [1]
    assert notify_socket.lines("READY=1") == ["READY=1"]
    assert notify_socket.lines("STATUS=")[-1].startswith("STATUS=enforcing 1 entries")
    daemon.close()
    assert not backend.removed  # stopping never removes the table or the zone
    assert notify_socket.lines("STOPPING=1") == ["STOPPING=1"]


def test_sigterm_during_a_sync_starts_no_new_download(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
) -> None:
    publish("a", "185.220.101.7\n", serial=1)
    publish("b", "evil.example\n", serial=1)
    config = write_config({"name": "a", "url": server.url("/a/manifest.json")},
                          {"name": "b", "url": server.url("/b/manifest.json")})
    daemon = make(config, Clock())
    daemon.start()
    real_get = daemon.fetcher.get

    def get_then_stop(url: str, **kwargs: Any) -> Any:
        response = real_get(url, **kwargs)
        daemon.stopping.set()  # SIGTERM arrives while the first download is running
        return response

    daemon.fetcher.get = get_then_stop  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        daemon.step()
    assert manifest_gets(server, "a") == 1
    assert manifest_gets(server, "b") == 0


# --- reacting to files, with the real inotify watcher ----------------------------------------

def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_a_change_in_local_dir_is_applied_and_retries_failed_feeds_at_once(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    enforced: Callable[[], dict[str, list[str]]], tmp_path: Path,
) -> None:
    (tmp_path / "local.d").mkdir()
    config = write_config({"name": "late", "url": server.url("/late/manifest.json")})
    clock = Clock()
    daemon = make(config, clock, watch=True)
    try:
        daemon.start()
        daemon.step()
        assert manifest_gets(server, "late") == 1  # 404: backing off for 30 s
        publish("late", "evil.example\n", serial=1)
        (tmp_path / "local.d" / "ops.deny").write_text("185.220.101.9 # ransomware C2\n")
        wait_until(lambda: daemon.pending.local_at is not None)
        daemon.step()
        assert manifest_gets(server, "late") == 1  # debounced: editors write in bursts
        clock.advance(DEBOUNCE)
        daemon.step()
        assert enforced()["v4"] == ["185.220.101.9"]
        assert manifest_gets(server, "late") == 2  # the failed feed was retried with it
        assert enforced()["names"] == ["evil.example"]
    finally:
        daemon.close()


def test_an_edited_configuration_is_reloaded_and_a_broken_one_refused(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    enforced: Callable[[], dict[str, list[str]]], caplog: pytest.LogCaptureFixture,
) -> None:
    publish("a", "185.220.101.7\n", serial=1)
    publish("b", "evil.example\n", serial=1)
    config = write_config({"name": "a", "url": server.url("/a/manifest.json")})
    clock = Clock()
    daemon = make(config, clock, watch=True)
    try:
        daemon.start()
        daemon.step()
        write_config({"name": "a", "url": server.url("/a/manifest.json")},
                     {"name": "b", "url": server.url("/b/manifest.json")})
        wait_until(lambda: daemon.pending.config_at is not None)
        clock.advance(DEBOUNCE)
        daemon.step()
        assert manifest_gets(server, "b") == 1
        assert manifest_gets(server, "a") == 2  # every feed is refreshed after a change
        assert enforced()["names"] == ["evil.example"]

        daemon.pending.config_at = None
        config.write_text(config.read_text() + "trusted_key: oops\n")
        wait_until(lambda: daemon.pending.config_at is not None)
        clock.advance(DEBOUNCE)
        daemon.step()
        assert "configuration reload refused" in caplog.text
        assert "trusted_key" in caplog.text
        assert [f.name for f in daemon.config.feeds] == ["a", "b"]  # the running one is kept
    finally:
        daemon.close()


# --- journal fields and metrics --------------------------------------------------------------

def test_journal_entries_carry_feed_serial_and_action(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
) -> None:
    publish("cert", "185.220.101.7\n", serial=7)
    config = write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    sent: list[tuple[str, dict[str, str]]] = []
    journal = notify.Journal(send=lambda message, **fields: sent.append((message, fields)))
    daemon = make(config, Clock(), journal=journal)
    daemon.start()
    daemon.step()
    daemon.close()
    refresh = [f for _, f in sent if f.get("ACTION") == "refresh"]
    assert refresh == [{"PRIORITY": "6", "SYSLOG_IDENTIFIER": "blocklist-agent",
                        "ACTION": "refresh", "FEED": "cert", "RESULT": "updated", "SERIAL": "7",
                        "ACCEPTED": "1"}]
    actions = [f["ACTION"] for _, f in sent]
    assert actions == ["start", "sync", "refresh", "sync", "stop"]
    sync = [f for _, f in sent if f["ACTION"] == "sync"][-1]
    assert (sync["RESULT"], sync["ENFORCED"], sync["APPLIED"]) == ("ok", "1", "1")


def test_journal_falls_back_to_log_lines_with_the_fields(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    caplog.set_level("INFO")
    notify.Journal().event(40, "feed x refused", FEED="x", REASON="rollback", SERIAL=None)
    assert "feed x refused [FEED=x REASON=rollback]" in caplog.text


def test_the_metrics_file_follows_each_sync(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    publish("cert", "185.220.101.7\n185.220.101.8\n185.220.101.9\n198.51.100.0/24\nnot a value!\n",
            serial=3)
    prom = tmp_path / "textfile" / "blocklist-agent.prom"
    prom.parent.mkdir()
    config = write_config({"name": "cert", "url": server.url("/cert/manifest.json")},
                          metrics_file=str(prom))

    class Counting(RecordingBackend):  # what NftablesBackend provides
        def counters(self, table: str) -> dict[str, int]:
            return {"v4": 42} if table == "blocklist_agent" else {}

        def offenders(self, table: str) -> list[dict[str, Any]]:
            raise ApplyError("nft list set failed")  # a failing source is skipped, not fatal

    daemon = make(config, Clock(), backends=lambda _c: [Counting()])
    daemon.start()
    text = prom.read_text()
    assert "blocklist_agent_enforced_total 0\n" in text
    daemon.step()
    text = prom.read_text()
    assert 'blocklist_agent_feed_serial{feed="cert"} 3\n' in text
    assert 'blocklist_agent_feed_rejected{feed="cert",reason="malformed"} 1\n' in text
    assert 'blocklist_agent_feed_rejected{feed="cert",reason="special-range"} 1\n' in text
    assert "blocklist_agent_enforced_total 3\n" in text
    assert 'blocklist_agent_last_sync_result{result="partial"} 0\n' in text
    assert 'blocklist_agent_blocked_packets_total{set="v4"} 42\n' in text
    assert "blocklist_agent_isolation_active 0\n" in text
    assert "offender" not in text
    assert sorted(os.listdir(prom.parent)) == ["blocklist-agent.prom"]
    # the kill switch, as `isolate` records it, shows at the next write
    isolation.save(daemon.store, isolation.IsolationState(active=True, since=int(time.time())))
    daemon.write_metrics()
    assert "blocklist_agent_isolation_active 1\n" in prom.read_text()


def test_an_unwritable_metrics_file_does_not_stop_the_sync(
    write_config: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    config = write_config(metrics_file=str(tmp_path / "missing-dir" / "x.prom"))
    daemon = make(config, Clock())
    daemon.start()
    daemon.write_metrics()
    assert caplog.text.count("cannot write the metrics file") == 1  # said once, not every minute
    assert (tmp_path / "state" / "applied.json").exists()


# --- sd_notify -----------------------------------------------------------------------------

@pytest.mark.parametrize("fallback", [False, True], ids=["python3-systemd", "socket-fallback"])
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_reaches_a_real_socket(
    fallback: bool, abstract: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tempfile.mkdtemp(prefix="ba-notify-")
    address = f"@ba-test-{os.getpid()}-{int(fallback)}" if abstract else f"{directory}/sock"
    listener = NotifySocket(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notify.use_fallback(fallback)
    try:
        assert notify.notify("READY=1", "STATUS=line one\nline two")
        listener.wait_for("READY=1", timeout=2)
        assert listener.drain() == ["READY=1\nSTATUS=line one line two"]
    finally:
        notify.use_fallback(False)
        listener.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify.notify("READY=1")  # not under systemd: nothing to tell, no error


def test_watchdog_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "180000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval() == 90
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert notify.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 90
    monkeypatch.delenv("WATCHDOG_USEC")
    assert notify.watchdog_interval() is None


# --- the real process: READY, watchdog, SIGHUP, SIGTERM ----------------------------------------

def start_agent(config: Path, address: str, watchdog_usec: int = 1_000_000
                ) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env.update(NOTIFY_SOCKET=address, WATCHDOG_USEC=str(watchdog_usec),
               PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "agent", "-c", str(config), "run"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def test_the_service_lifecycle(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    cli: Callable[..., Any], state_dir: Path, tmp_path: Path,
) -> None:
    publish("a", "185.220.101.7\n", serial=1)
    publish("b", "evil.example\n", serial=1)
    feed_a = {"name": "a", "url": server.url("/a/manifest.json"), "refresh": "1h"}
    config = write_config(feed_a)
    assert cli("sync").code == 0
    applied = state_dir / "applied.json"
    applied.unlink()  # e.g. lost; the cached feed is the last good state
    server.route("/a/manifest.json", Reply(status=503))  # and the feed server is down

    listener = NotifySocket(f"@ba-lifecycle-{os.getpid()}")
    proc = start_agent(config, listener.address)
    try:
        listener.wait_for("READY=1")
        # READY only once the last good state is enforced, without the network
        assert applied_sets(state_dir)["v4"] == ["185.220.101.7"]
        assert any(s.startswith("STATUS=enforcing 1 entries") for s in listener.lines("STATUS="))
        pings = len(listener.lines("WATCHDOG=1"))
        time.sleep(1.2)
        assert len(listener.lines("WATCHDOG=1")) >= pings + 2  # every half WatchdogSec/2

        # SIGHUP with a good configuration: the new feed is fetched and enforced
        write_config(feed_a, {"name": "b", "url": server.url("/b/manifest.json")})
        mark = len(listener.drain())
        proc.send_signal(signal.SIGHUP)
        listener.wait_for("RELOADING=1", after=mark)
        wait_until(lambda: "evil.example" in applied_sets(state_dir).get("names", []),
                   timeout=20)
        assert applied_sets(state_dir)["v4"] == ["185.220.101.7"]

        # SIGHUP with a broken configuration: refused, the running one kept
        config.write_text(config.read_text().replace("feeds:", "feedz:"))
        mark = len(listener.drain())
        proc.send_signal(signal.SIGHUP)
        refused = listener.wait_for("STATUS=configuration reload REFUSED", after=mark)
        assert "feedz" in listener.messages[refused]
        (tmp_path / "local.d").mkdir(exist_ok=True)
        (tmp_path / "local.d" / "ops.deny").write_text("185.220.101.9\n")
        wait_until(lambda: "185.220.101.9" in applied_sets(state_dir).get("v4", []),
                   timeout=20)
        sets = applied_sets(state_dir)
        assert sets["names"] == ["evil.example"]  # still both feeds: the old configuration
        assert proc.poll() is None

        # SIGTERM: clean exit, enforcement left in place
        mark = len(listener.drain())
        code, err = stop(proc)
        assert code == 0, err
        listener.wait_for("STOPPING=1", after=mark)
        assert "configuration reload refused (SIGHUP)" in err
        assert "configuration reloaded (SIGHUP)" in err
        assert applied_sets(state_dir)["v4"] == ["185.220.101.7", "185.220.101.9"]
    finally:
        stop(proc)
        listener.close()


def test_sigterm_lets_the_download_under_way_finish_then_exits(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
    www: Path,
) -> None:
    publish("slow", "185.220.101.7\n", serial=1)
    publish("next", "evil.example\n", serial=1)
    manifest = (www / "slow" / "manifest.json").read_bytes()
    server.route("/slow/manifest.json", Reply(body=manifest, delay=1.5))
    config = write_config({"name": "slow", "url": server.url("/slow/manifest.json")},
                          {"name": "next", "url": server.url("/next/manifest.json")})
    listener = NotifySocket(f"@ba-term-{os.getpid()}")
    proc = start_agent(config, listener.address, watchdog_usec=0)
    try:
        listener.wait_for("READY=1")
        wait_until(lambda: server.requests_for("/slow/manifest.json"))
        started = time.monotonic()
        code, err = stop(proc)
        assert code == 0, err
        assert time.monotonic() - started < 10
        assert manifest_gets(server, "next") == 0  # no new download after SIGTERM
        assert "Traceback" not in err
    finally:
        stop(proc)
        listener.close()


def test_run_refuses_a_broken_configuration_with_exit_2(
    write_config: Callable[..., Path], cli: Callable[..., Any],
) -> None:
    config = write_config(firewall={"backend": "iptables"})
    result = cli("-c", config, "run")
    assert result.code == 2
    assert "firewall.backend" in result.err
