"""Faults never cost protection (issue 12), without root: one bad feed, override file or state
file costs only itself; override edits are never lost; one daemon per state directory.

The real command line against a real HTTP server (tests/conftest.py); the kernel-side cases
(kill -9 at every write, a full disk, a hung resolver, boot files) are in
tests/lab/test_fault_injection.py.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.daemon.loop import Daemon
from agent.errors import StateError
from agent.publish.minisign import SecretKey, sign
from agent.state import StateStore
from agent.verify import PublicKey
from lab.httpserver import HttpServer
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
GOOD = "185.220.101.7\n"


def _raw_feed(www: Path, name: str, key: SecretKey, payloads: dict[str, bytes], *,
              serial: str = "7") -> None:
    """A signed feed whose manifest says whatever the test wants (names, a huge serial)."""
    root = www / name
    for path, data in payloads.items():
        target = root / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError:
            continue  # `a` and `a/b`, 300 characters: only the manifest needs to name them
    now = datetime.now(UTC)
    entries = ", ".join(json.dumps({"path": p, "format": "plain", "size": len(d),
                                    "sha256": hashlib.sha256(d).hexdigest()})
                        for p, d in payloads.items())
    text = (f'{{"format": "blocklist-feed/1", "publisher": "T", "serial": {serial}, '
            f'"issued": "{(now - timedelta(minutes=1)):%Y-%m-%dT%H:%M:%SZ}", '
            f'"expires": "{(now + timedelta(days=7)):%Y-%m-%dT%H:%M:%SZ}", '
            f'"payloads": [{entries}]}}').encode()
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_bytes(text)
    (root / "manifest.json.minisig").write_text(sign(text, key, trusted_comment="t"))


BAD_FEEDS: dict[str, Callable[[Path, SecretKey], None]] = {
    "colliding": lambda www, k: _raw_feed(www, "colliding", k, {"a": b"1.2.3.4\n",
                                                                 "a/b": b"1.2.3.5\n"}),
    "long-name": lambda www, k: _raw_feed(www, "long-name", k, {"x" * 300: b"1.2.3.4\n"}),
    "state-name": lambda www, k: _raw_feed(www, "state-name", k, {"record.json": b"1.2.3.4\n"}),
    "huge-serial": lambda www, k: _raw_feed(www, "huge-serial", k, {"l.txt": b"1.2.3.4\n"},
                                            serial="9" * 5001),
    "deep-json": lambda www, k: _raw_feed(www, "deep-json", k, {"l.txt": b"1.2.3.4\n"},
                                          serial="[" * 100_000),
}


def test_malformed_feeds_beside_a_good_one_the_good_one_is_applied(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        www: Path, cli: Cli, enforced: Callable[[], dict[str, list[str]]],
        keypair: tuple[PublicKey, SecretKey]) -> None:
    publish("good", GOOD)
    for make in BAD_FEEDS.values():
        make(www, keypair[1])
    csv_dir = www / "csv"
    csv_dir.mkdir()
    (csv_dir / "list.csv").write_bytes(b"# Feodo\r banner\n" + b"first_seen_utc,dst_ip\r0\n")
    feeds = [{"name": "good", "url": server.url("/good/manifest.json")},
             *({"name": n, "url": server.url(f"/{n}/manifest.json")} for n in BAD_FEEDS),
             {"name": "csv", "url": f"file://{csv_dir}/list.csv", "format": "feodo-csv",
              "signature": "none"}]
    local = write_config(*feeds).parent / "local.d"
    local.mkdir()
    (local / "nul.deny").write_text(
        "203.0.113.50\0x\n45.1.2.0/24\n")
    result = cli("sync", "--json")
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    doc = result.json
    assert doc["applied"] is True and doc["error"] is None
    by_name = {f["name"]: f for f in doc["feeds"]}
    assert by_name["good"]["error"] is None and by_name["good"]["accepted"] == 1
    for name in [*BAD_FEEDS, "csv"]:
        assert by_name[name]["status"] == "failed", name
        assert by_name[name]["error"]["reason"] in ("malformed-manifest", "format-unreadable",
                                                    "format"), by_name[name]["error"]
    assert enforced()["v4"] == ["185.220.101.7"]
    assert enforced()["v4_nets"] == ["45.1.2.0/24"]  # the NUL line alone was refused
    assert doc["overrides"]["rejects"] and "nul.deny:1" in doc["overrides"]["rejects"][0]["ref"]
    status = cli("status", "--json")
    assert status.code == 1 and "Traceback" not in status.err


def _damage(path: Path, how: str) -> None:
    path.write_bytes({"empty": b"", "list": b"[]", "garbage": b"\x00\xffnot json{"}[how])


@pytest.mark.parametrize("how", ["empty", "list", "garbage"])
@pytest.mark.parametrize("which", ["status.json", "applied.json", "record.json", "payload"])
def test_a_damaged_state_file_heals_within_two_syncs(
        which: str, how: str, publish: Callable[..., Any], write_config: Callable[..., Path],
        server: HttpServer, cli: Cli, state_dir: Path,
        enforced: Callable[[], dict[str, list[str]]]) -> None:
    publish("cert", GOOD, "45.9.9.9\n")
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    assert cli("sync").code == 0
    current = state_dir / "feeds" / "cert" / "current"
    target = {"status.json": state_dir / "status.json", "applied.json": state_dir / "applied.json",
              "record.json": current / "record.json",
              "payload": current / "indicators.txt"}[which]
    _damage(target, how)
    first = cli("sync")
    assert "Traceback" not in first.err
    second = cli("sync", "--json")
    assert second.code == 0, second.out + second.err
    assert cli("status").code == 0
    assert enforced()["v4"] == ["185.220.101.7", "45.9.9.9"]
    damaged = list((state_dir / "damaged").iterdir())
    assert damaged, "the damaged file is kept for inspection"
    status = json.loads((state_dir / "status.json").read_text())
    if which != "status.json":  # a damaged status.json is named in the next one
        assert status["state_repairs"]


def test_a_cached_copy_damaged_is_fetched_again_although_the_server_answers_304(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        cli: Cli, state_dir: Path) -> None:
    publish("cert", GOOD)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    assert cli("sync").code == 0
    payload = state_dir / "feeds" / "cert" / "current" / "indicators.txt"
    payload.write_text("6.6.6.6\n")
    result = cli("sync", "--json")
    assert result.code == 0, result.out
    assert result.json["feeds"][0]["status"] == "updated"  # downloaded whole, not a 304
    assert (state_dir / "feeds" / "cert" / "current" / "indicators.txt").read_text() == GOOD


def test_twenty_parallel_allows_keep_twenty_entries(write_config: Callable[..., Path],
                                                    tmp_path: Path) -> None:
    config = write_config()
    procs = [subprocess.Popen([sys.executable, "-m", "agent", "-c", str(config), "allow",
                               f"203.0.113.{i}", "--reason", f"ticket {i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(1, 21)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    lines = [line for line in (tmp_path / "local.d" / "cli.allow").read_text().splitlines()
             if line and not line.startswith("#")]
    assert len(lines) == 20


def test_a_second_daemon_refuses_to_start_and_names_the_first(
        write_config: Callable[..., Path]) -> None:
    config = write_config()
    first = Daemon(str(config), watch=False)
    first.start()
    try:
        with pytest.raises(StateError, match=r"already running .*pid \d+, started as"):
            Daemon(str(config), watch=False).start()
    finally:
        first.close()
    second = Daemon(str(config), watch=False)
    second.start()  # the lock went with the first one
    second.close()


def test_leftovers_of_killed_writers_are_removed_by_the_next_sync(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        cli: Cli, state_dir: Path) -> None:
    publish("cert", GOOD)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    assert cli("sync").code == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    feed = state_dir / "feeds" / "cert"
    left = [state_dir / f".applied.json.blocklist-agent-{dead}.x1y2z3w4.tmp",
            state_dir / ".enforced.nft.abcd1234.tmp", feed / f".current.{dead}",
            feed / "gen-9-1"]
    for path in left:
        path.write_text("x") if path.name != "gen-9-1" else path.mkdir()
    old = time.time() - 3600
    os.utime(left[1], (old, old))
    os.utime(left[2], (old, old))
    mine = state_dir / f".status.json.blocklist-agent-{os.getpid()}.abcdefgh.tmp"
    mine.write_text("a live writer's")
    assert cli("sync").code == 0
    assert [p for p in left if p.exists()] == []
    assert mine.exists()  # the writer is alive: not ours to remove


def test_store_validates_the_shape_of_every_state_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.ensure()
    (tmp_path / "applied.json").write_text('{"sets": {"v4": [1]}, "meta": {}}')
    (tmp_path / "nftables.json").write_text("[]")
    (tmp_path / "isolation.json").write_text('{"active": true, "peers": [{"name": "x"}]}')
    assert store.load_applied() is None
    assert store.load_nft_record() == {}
    from agent.isolation import record

    assert record.load(store).active is False
    moved = store.repairs()
    assert sorted(Path(m["file"]).name for m in moved) == ["applied.json", "isolation.json",
                                                           "nftables.json"]
    assert all(Path(m["moved_to"]).exists() for m in moved)


def _addresses(first: int, count: int) -> str:
    return "".join(f"45.{first}.{i // 250}.{i % 250 + 1}\n" for i in range(count))


def test_the_indicator_cap_refuses_the_feed_that_passes_it(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        cli: Cli, enforced: Callable[[], dict[str, list[str]]]) -> None:
    publish("a", _addresses(1, 700))
    publish("b", _addresses(2, 700))
    write_config({"name": "a", "url": server.url("/a/manifest.json")},
                 {"name": "b", "url": server.url("/b/manifest.json")},
                 max_sync_indicators=1000)
    result = cli("sync", "--json")
    assert result.code == 1
    feeds = {f["name"]: f for f in result.json["feeds"]}
    assert feeds["a"]["error"] is None and feeds["a"]["accepted"] == 700
    assert feeds["b"]["error"]["reason"] == "sync-too-large"
    assert "max_sync_indicators" in feeds["b"]["error"]["message"]
    assert len(enforced()["v4"]) == 700


@pytest.mark.slow
def test_sync_timeout_refuses_the_feeds_still_pending(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        cli: Cli) -> None:
    from lab.httpserver import Reply

    publish("good", GOOD)
    publish("late", "45.3.3.3\n")
    server.route("/slow/manifest.json", Reply(body=b"{}", delay=30))
    write_config({"name": "good", "url": server.url("/good/manifest.json")},
                 {"name": "slow", "url": server.url("/slow/manifest.json"), "timeout": "60s"},
                 {"name": "late", "url": server.url("/late/manifest.json")},
                 sync_timeout="10s")
    started = time.monotonic()
    result = cli("sync", "--json")
    assert time.monotonic() - started < 20
    feeds = {f["name"]: f for f in result.json["feeds"]}
    assert feeds["good"]["error"] is None
    assert feeds["slow"]["error"]["reason"] == "sync-timeout"
    assert feeds["late"]["error"]["reason"] == "sync-timeout"
    assert result.json["applied"] is True


def test_one_failing_backend_does_not_hide_what_another_applied(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        state_dir: Path) -> None:
    from agent import config as config_mod
    from agent import overrides, pipeline
    from agent.backends.base import Backend
    from agent.fetch import HttpFetcher

    applied: list[int] = []
    collecting: list[bool] = []

    class Broken(Backend):
        name = "broken"

        def apply(self, plan: Any, blocklist: Any, ctx: Any) -> str:
            raise RuntimeError("a bug")

    class Works(Backend):
        name = "works"

        def apply(self, plan: Any, blocklist: Any, ctx: Any) -> str:
            applied.append(blocklist.total)
            collecting.append(gc.isenabled())
            return "works: applied"

    publish("cert", GOOD)
    config = config_mod.load(write_config({"name": "cert",
                                           "url": server.url("/cert/manifest.json")}))
    result = pipeline.run(config, fetcher=HttpFetcher(), store=StateStore(state_dir),
                          local=overrides.Overrides.empty(), backends=[Broken(), Works()])
    assert applied == [1]
    # the collector is paused for the sync (agent.util.gcpause) and running again after it,
    # whatever failed inside
    assert collecting == [False] and gc.isenabled()
    assert [(b["name"], b["applied"]) for b in result.backends] == [("broken", False),
                                                                    ("works", True)]
    assert result.error is not None and result.error.reason == "internal-applying"
    assert "RuntimeError: a bug" in result.error.what and not result.applied
    status = json.loads((state_dir / "status.json").read_text())
    assert [b["name"] for b in status["last_sync"]["backends"]] == ["broken", "works"]


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    from agent.fetch.http import retry_after

    assert retry_after("120") == 120.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("99999999") == 86400.0
    later = retry_after("Wed, 01 Jan 2098 00:00:00 GMT")
    assert later == 86400.0
    assert retry_after("Wed, 01 Jan 2020 00:00:00 GMT") == 0.0


def test_retry_after_delays_the_feeds_next_attempt() -> None:
    from agent.daemon import schedule as sched

    s = sched.initial([("cert", 900.0)], 0.0)
    later = sched.not_before(s, "cert", 3600.0)
    assert later.feeds["cert"].due == 3600.0
    assert sched.not_before(later, "cert", 10.0) == later


def test_the_daemon_stays_responsive_while_a_long_download_runs(
        publish: Callable[..., Any], write_config: Callable[..., Path], server: HttpServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Watchdog pings and isolation deadlines go on during a sync; a SIGHUP cuts the
    downloads still to come, and those feeds are due again at once, not backed off."""
    import threading

    from agent.daemon import loop
    from lab.httpserver import Reply

    publish("late", GOOD)
    config = write_config({"name": "slow", "url": server.url("/slow/manifest.json")},
                          {"name": "late", "url": server.url("/late/manifest.json")})
    pings: list[float] = []
    monkeypatch.setattr(loop, "notify", lambda *a: pings.append(time.monotonic())
                        if "WATCHDOG=1" in a else None)
    daemon = Daemon(str(config), watch=False, own_addresses=list)
    daemon.start()
    daemon.watchdog = 1.0  # a ping every 0.5 s
    deadline_checks: list[float] = []
    monkeypatch.setattr(daemon, "_isolation_deadlines",
                        lambda: deadline_checks.append(time.monotonic()))
    server.route("/slow/manifest.json", Reply(status=404, delay=4))
    threading.Timer(1.0, lambda: setattr(daemon, "reload_requested", True)).start()
    started = time.monotonic()
    daemon.sync(frozenset({"slow", "late"}))
    took = time.monotonic() - started
    try:
        assert 3.5 < took < 10
        status = json.loads((Path(daemon.config.state_dir) / "status.json").read_text())
        assert status["feeds"]["late"]["error"]["reason"] == "sync-interrupted"
        during = [t for t in pings if started <= t <= started + took]
        gaps = [b - a for a, b in zip([started, *during], [*during, started + took],
                                      strict=True)]
        assert max(gaps) < 1.2, gaps
        assert len([t for t in deadline_checks if t <= started + took]) >= 5
        assert daemon.schedule.feeds["late"].failures == 0  # cut short, not failed
    finally:
        daemon.close()
