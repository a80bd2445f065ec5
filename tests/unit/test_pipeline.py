"""The whole sync against real feed servers: what is recorded, refused, held and kept.

Feeds are published with agent.publish and served by lab/httpserver.py on 127.0.0.1 (or read
through file://); the agent runs through its command line with `firewall.backend: none` and
`dns.backend: none`, so what is "enforced" is state_dir/applied.json. Every refusal must keep the
last good enforcement exactly, exit 1, and show its reason in `status --json`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agent import overrides, pipeline
from agent.config import load as load_config
from agent.fetch import HttpFetcher
from agent.publish import sign_file
from agent.publish.minisign import SecretKey
from agent.state import StateStore
from agent.verify.minisign import PublicKey
from lab.httpserver import (
    CertificateAuthority,
    HttpServer,
    Reply,
    conditional_reply,
    unused_port,
)
from tests.state_helpers import applied_sets

# Public, non-special addresses and names (documentation ranges are refused by the guards).
BASE_V4 = [f"185.220.101.{i}" for i in range(1, 11)]
BASE = (
    "\n".join(
        [
            "# CERT test feed",
            *BASE_V4,
            "91.219.236.0/24",
            "2a0b:4340:a1::/48",
            "evil-c2.com",
            "*.phish-kit.net",
        ]
    )
    + "\n"
)
BASE_SETS = {
    "v4": sorted(BASE_V4),
    "v4_nets": ["91.219.236.0/24"],
    "v6": [],
    "v6_nets": ["2a0b:4340:a1::/48"],
    "names": ["evil-c2.com"],
    "wild": ["phish-kit.net"],
    "allow_names": [],
    "allow_wild": [],
    "allow_ips": [],
    "below": [],
    "pass_names": [],
    "pass_below": [],
    "drop": [],
    "nodata": [],
}
NEWER = BASE + "45.155.205.99\n"  # one entry more: an ordinary update

if TYPE_CHECKING:
    from tests.conftest import CliResult

Cli = Callable[..., "CliResult"]


@dataclass
class Env:
    """A feed `cert` published at serial 1, served over http, synced once."""

    tmp: Path
    www: Path
    server: HttpServer
    publish: Callable[..., Any]
    write_config: Callable[..., Path]
    cli: Cli
    enforced: Callable[[], dict[str, list[str]]]
    state: Path

    @property
    def url(self) -> str:
        return self.server.url("/cert/manifest.json")

    def config(self, **settings: Any) -> Path:
        return self.write_config({"name": "cert", "url": self.url, **settings})

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        data: dict[str, Any] = result.json
        return data

    def refused(self, reason: str) -> CliResult:
        """Sync; it must fail with `reason` and keep exactly the base enforcement."""
        before = applied_sets(self.state)
        result = self.cli("sync")
        assert result.code == 1, result
        assert f"REFUSED ({reason})" in result.out, result.out
        assert self.enforced() == BASE_SETS
        applied = json.loads((self.state / "applied.json").read_text())
        assert applied_sets(self.state) == before
        assert applied["meta"]["feeds"] == {"cert": 1}
        status = self.cli("status", "--json")
        assert status.code == 1
        feed = status.json["feeds"]["cert"]
        assert feed["error"]["reason"] == reason, feed["error"]
        assert feed["status"] == "kept"
        assert feed["serial"] == 1
        assert feed["failures"] == 1
        assert status.json["healthy"] is False
        assert status.json["enforced"]["v4"] == len(BASE_V4)
        assert f"last error ({reason})" in self.cli("status").out
        record = json.loads((self.state / "feeds/cert/current/record.json").read_text())
        assert record["serial"] == 1
        why = self.cli("why", "185.220.101.3", "--json")
        assert why.json["blocked"] is True
        assert why.json["sources"][0]["serial"] == 1
        return result

    def recovers(self, serial: int = 5) -> None:
        """A good newer serial is accepted after the refusal, and the error is cleared."""
        self.publish("cert", NEWER, serial=serial)
        result = self.cli("sync")
        assert result.code == 0, result
        assert "45.155.205.99" in self.enforced()["v4"]
        status = self.status()
        assert status["feeds"]["cert"]["error"] is None
        assert status["feeds"]["cert"]["serial"] == serial
        assert status["healthy"] is True


@pytest.fixture
def env(
    tmp_path: Path,
    www: Path,
    server: HttpServer,
    publish: Callable[..., Any],
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
    state_dir: Path,
) -> Env:
    e = Env(tmp_path, www, server, publish, write_config, cli, enforced, state_dir)
    publish("cert", BASE, serial=1)
    e.config()
    result = cli("sync")
    assert result.code == 0, result
    assert enforced() == BASE_SETS
    return e


# --- first sync, status --------------------------------------------------------------------


def test_first_sync_records_feed_and_applied_state(env: Env) -> None:
    applied = json.loads((env.state / "applied.json").read_text())
    assert applied["meta"]["feeds"] == {"cert": 1}
    assert applied["meta"]["rpz_serial"] > 0
    record = json.loads((env.state / "feeds/cert/current/record.json").read_text())
    assert record["serial"] == 1
    assert record["publisher"] == "CERT Test"
    assert record["url"] == env.url
    current = env.state / "feeds/cert/current"
    assert current.is_symlink()
    assert (current / "manifest.json").read_bytes() == (env.www / "cert/manifest.json").read_bytes()
    assert (current / "indicators.txt").read_text() == BASE
    cached = StateStore(env.state).load_feed("cert")  # the provenance `why` reads
    assert cached is not None
    assert any(line.startswith("evil-c2.com\t") for line in cached.index_lines())


def test_status_after_sync(env: Env) -> None:
    result = env.cli("status", "--json")
    assert result.code == 0, result
    doc = result.json
    assert set(doc) >= {
        "feeds",
        "last_sync",
        "enforced",
        "applied_at",
        "guard_rejects",
        "overrides",
        "healthy",
    }
    assert doc["healthy"] is True
    assert doc["last_sync"]["result"] == "ok"
    assert doc["last_sync"]["applied"] is True
    feed = doc["feeds"]["cert"]
    assert (feed["serial"], feed["publisher"], feed["error"], feed["failures"]) == (
        1,
        "CERT Test",
        None,
        0,
    )
    assert feed["last_success"] is not None
    assert doc["enforced"]["v4"] == len(BASE_V4)
    text = env.cli("status")
    assert text.code == 0
    assert "feed cert: updated, serial 1" in text.out


def test_status_before_any_sync(
    write_config: Callable[..., Path], cli: Cli, state_dir: Path
) -> None:
    write_config({"name": "cert", "url": "https://feeds.invalid/cert/manifest.json"})
    result = cli("status", "--json")
    assert result.code == 1  # degraded: nothing enforced yet
    assert result.json["last_sync"] is None
    assert result.json["feeds"]["cert"]["status"] == "never synced"
    assert result.json["healthy"] is False
    text = cli("status")
    assert "last sync: never" in text.out
    assert not (state_dir / "applied.json").exists()


def test_first_sync_is_never_held_even_when_big(
    publish: Callable[..., Any],
    server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    big = "".join(f"5.{i // 200}.{i % 200}.9\n" for i in range(3000))
    publish("cert", big, serial=1)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    result = cli("sync", "--json")
    assert result.code == 0, result.out
    plan = result.json["plan"]
    assert plan["first"] is True and plan["held"] is None and plan["added"] == 3000
    assert len(enforced()["v4"]) == 3000


def test_first_sync_after_a_failed_first_attempt_is_not_held(
    publish: Callable[..., Any],
    server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    """A gateway installed while its feed server is unreachable: the first real data must not
    wait for --force because the failed attempt recorded an empty enforcement."""
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    first = cli("sync")
    assert first.code == 1
    assert "REFUSED (http-404)" in first.out
    publish("cert", BASE, serial=1)
    second = cli("sync", "--json")
    assert second.code == 0, second.out
    assert second.json["plan"]["held"] is None
    assert enforced() == BASE_SETS


def test_ordinary_update_is_applied(env: Env) -> None:
    env.publish("cert", NEWER, serial=2)
    result = env.cli("sync", "--json")
    assert result.code == 0
    assert result.json["plan"]["added"] == 1 and result.json["plan"]["removed"] == 0
    assert result.json["feeds"][0]["status"] == "updated"
    assert "45.155.205.99" in env.enforced()["v4"]
    assert json.loads((env.state / "feeds/cert/current/record.json").read_text())["serial"] == 2


# --- refusals: the last good enforcement stays -----------------------------------------------


def test_tampered_manifest_is_refused(env: Env) -> None:
    env.publish("cert", NEWER, serial=2)
    manifest = env.www / "cert/manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"serial": 2', b'"serial": 3'))
    env.refused("bad-signature")
    env.recovers()


def test_unknown_key_is_refused(env: Env, other_keypair: tuple[PublicKey, SecretKey]) -> None:
    env.publish("cert", NEWER, serial=2, key=other_keypair[1])
    result = env.refused("unknown-key")
    assert other_keypair[0].key_id_hex in result.out
    env.recovers()


def test_rollback_is_refused(env: Env) -> None:
    env.publish("cert", NEWER, serial=4)
    assert env.cli("sync").code == 0
    shutil.rmtree(env.www / "cert")
    env.publish("cert", BASE, serial=3)  # an older serial, validly signed
    before = env.enforced()
    result = env.cli("sync")
    assert result.code == 1
    assert "REFUSED (rollback)" in result.out
    assert env.enforced() == before
    assert "45.155.205.99" in before["v4"]
    feed = env.status()["feeds"]["cert"]
    assert feed["error"]["reason"] == "rollback"
    assert feed["serial"] == 4


def test_rollback_below_first_serial_is_refused(env: Env) -> None:
    shutil.rmtree(env.www / "cert")
    env.publish("cert", NEWER, serial=0)
    env.refused("rollback")
    env.recovers()


def test_replay_same_serial_other_content_is_refused(env: Env) -> None:
    shutil.rmtree(env.www / "cert")
    env.publish("cert", NEWER, serial=1)
    result = env.refused("replay")
    assert "ALARM" in result.out
    env.recovers()


def test_expired_manifest_is_refused(env: Env) -> None:
    env.publish(
        "cert",
        NEWER,
        serial=2,
        now=datetime.now(UTC) - timedelta(days=8),
        expires=timedelta(days=7),
    )
    env.refused("expired")
    env.recovers()


def test_future_dated_manifest_is_refused(env: Env) -> None:
    env.publish("cert", NEWER, serial=2, now=datetime.now(UTC) + timedelta(hours=1))
    env.refused("future")
    env.recovers()


def test_payload_swapped_after_publishing_is_refused(env: Env) -> None:
    env.publish("cert", NEWER, serial=2)
    payload = env.www / "cert/indicators.txt"
    payload.write_text(NEWER.replace("45.155.205.99", "45.155.205.98"))  # same size
    env.refused("payload-hash")
    env.recovers()


def test_payload_larger_than_max_size_is_refused(env: Env) -> None:
    env.config(max_size="1KiB")
    env.publish("cert", NEWER + "".join(f"5.6.{i}.1\n" for i in range(200)), serial=2)
    result = env.refused("payload-size")
    assert "max_size" in result.out
    env.config()
    env.recovers()


@pytest.mark.parametrize(("status", "reason"), [(500, "http-500"), (404, "http-404")])
def test_http_error_keeps_the_last_good_feed(env: Env, status: int, reason: str) -> None:
    env.publish("cert", NEWER, serial=2)
    env.server.route("/cert/manifest.json", Reply(status=status, body=b"oops\n"))
    env.refused(reason)
    manifest = env.www / "cert/manifest.json"
    env.server.route(
        "/cert/manifest.json",
        lambda request: conditional_reply(
            request, manifest.read_bytes(), mtime=manifest.stat().st_mtime
        ),
    )
    env.recovers()


def test_connection_refused_keeps_the_last_good_feed(env: Env) -> None:
    env.publish("cert", NEWER, serial=2)
    env.config(url=f"http://127.0.0.1:{unused_port()}/cert/manifest.json")
    result = env.refused("connect")
    assert "connection refused" in result.out
    env.config()
    env.recovers()


def test_timeout_keeps_the_last_good_feed(env: Env) -> None:
    env.publish("cert", NEWER, serial=2)
    env.config(timeout="1s")
    env.server.route("/cert/manifest.json", Reply(body=b"{}", delay=3))
    started = time.monotonic()
    env.refused("timeout")
    assert time.monotonic() - started < 2.9


def test_key_rotation_accepts_any_configured_key(
    env: Env,
    keypair: tuple[PublicKey, SecretKey],
    other_keypair: tuple[PublicKey, SecretKey],
) -> None:
    env.config(trusted_keys=[keypair[0].to_text(), other_keypair[0].to_text()])
    env.publish("cert", NEWER, serial=2, key=other_keypair[1])
    result = env.cli("sync")
    assert result.code == 0, result
    record = json.loads((env.state / "feeds/cert/current/record.json").read_text())
    assert record["key_id"] == other_keypair[0].key_id_hex


def test_too_many_malformed_lines_are_refused(env: Env) -> None:
    garbage = "".join(f"not an indicator {i}\n" for i in range(10))
    env.publish("cert", NEWER + garbage, serial=2)  # 10 of 25 entries: above 20 %
    result = env.refused("format")
    assert "max_reject_ratio" in result.out
    env.config(max_reject_ratio=0.5)  # the operator accepts it
    result = env.cli("sync")
    assert result.code == 0, result
    assert "45.155.205.99" in env.enforced()["v4"]


def test_tls_error_then_success_with_ca_file(env: Env, www: Path, ca: CertificateAuthority) -> None:
    env.publish("cert", NEWER, serial=2)
    with HttpServer(root=www, ca=ca) as https:
        url = https.url("/cert/manifest.json")
        env.config(url=url)
        result = env.refused("tls")
        assert "ca_file" in result.out  # the hint names the fix
        env.config(url=url, ca_file=https.ca_file)
        result = env.cli("sync")
        assert result.code == 0, result
    assert "45.155.205.99" in env.enforced()["v4"]
    assert env.status()["feeds"]["cert"]["serial"] == 2


def test_refused_feed_does_not_block_another_feed(env: Env) -> None:
    env.publish("other", "45.9.148.3\n", serial=1)
    env.write_config(
        {"name": "cert", "url": env.url},
        {"name": "other", "url": env.server.url("/other/manifest.json")},
    )
    env.publish(
        "cert",
        NEWER,
        serial=2,
        now=datetime.now(UTC) - timedelta(days=8),
        expires=timedelta(days=7),
    )
    result = env.cli("sync", "--json")
    assert result.code == 1
    feeds = {f["name"]: f for f in result.json["feeds"]}
    assert feeds["cert"]["status"] == "kept"
    assert feeds["cert"]["error"]["reason"] == "expired"
    assert feeds["other"]["status"] == "updated"
    sets = env.enforced()
    assert "45.9.148.3" in sets["v4"] and "185.220.101.3" in sets["v4"]
    assert "45.155.205.99" not in sets["v4"]


def test_first_sync_refused_feed_records_nothing_for_it(
    publish: Callable[..., Any],
    server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    state_dir: Path,
) -> None:
    publish("cert", BASE, serial=1, now=datetime.now(UTC) + timedelta(hours=2))
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["status"] == "failed"
    assert result.json["feeds"][0]["error"]["reason"] == "future"
    assert not (state_dir / "feeds/cert/current").exists()
    status = cli("status", "--json").json
    assert status["feeds"]["cert"]["error"]["reason"] == "future"


def test_tampered_cache_is_not_trusted(env: Env) -> None:
    """The last good copy is re-verified when it is used again."""
    env.publish(
        "cert",
        NEWER,
        serial=2,
        now=datetime.now(UTC) - timedelta(days=8),
        expires=timedelta(days=7),
    )
    cached = env.state / "feeds/cert/current/indicators.txt"
    cached.write_text(BASE.replace("185.220.101.3", "185.220.101.4"))
    result = env.cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["status"] == "failed"
    assert result.json["result"] == "held"  # nothing usable left: removing everything is held
    assert env.enforced() == BASE_SETS


# --- held plans -------------------------------------------------------------------------------


def test_plan_removing_most_entries_is_held_until_forced(env: Env) -> None:
    before = (env.state / "applied.json").read_bytes()
    env.publish("cert", "185.220.101.1\n185.220.101.2\nevil-c2.com\n", serial=2)
    result = env.cli("sync")
    assert result.code == 1
    assert "HELD" in result.out
    assert "--force" in result.out
    assert (env.state / "applied.json").read_bytes() == before
    assert json.loads((env.state / "feeds/cert/current/record.json").read_text())["serial"] == 1
    status = env.cli("status", "--json")
    assert status.code == 1
    assert status.json["last_sync"]["result"] == "held"
    assert status.json["last_sync"]["plan"]["held"]
    assert "HELD" in env.cli("status").out
    # held again on the next run: nothing was recorded
    assert env.cli("sync").code == 1
    forced = env.cli("sync", "--force", "--json")
    assert forced.code == 0, forced.out
    assert forced.json["plan"]["forced"] is True
    assert env.enforced()["v4"] == ["185.220.101.1", "185.220.101.2"]
    assert json.loads((env.state / "feeds/cert/current/record.json").read_text())["serial"] == 2
    assert env.cli("status", "--json").json["healthy"] is True


def test_plan_held_by_a_custom_max_change(env: Env) -> None:
    env.write_config({"name": "cert", "url": env.url}, guards={"max_change": 0.05})
    env.publish("cert", NEWER, serial=2)  # +1 of 14: 7 %
    result = env.cli("sync", "--json")
    assert result.code == 1
    assert result.json["result"] == "held"
    assert result.json["applied"] is False
    assert env.enforced() == BASE_SETS


# --- dry run, render ----------------------------------------------------------------------------


def test_dry_run_touches_no_state_and_renders(
    publish: Callable[..., Any],
    server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    publish(
        "cert", BASE + "198.18.7.7\n1.0.0.0/4\nco.uk\nwww.chu-example.fr\nbad value!\n", serial=1
    )
    write_config(
        {"name": "cert", "url": server.url("/cert/manifest.json")},
        guards={"protected": ["chu-example.fr"]},
    )
    out = tmp_path / "render"
    result = cli("sync", "--dry-run", "--render-to", out, "--json")
    assert result.code == 0, result.out
    doc = result.json
    assert doc["dry_run"] is True and doc["applied"] is False
    assert not state_dir.exists()
    feed = doc["feeds"][0]
    assert feed["guard_rejects"] == {
        "special-range": 1,
        "prefix-too-short": 1,
        "public-suffix": 1,
        "protected": 1,
    }
    assert feed["parse_rejects"] == 1
    assert feed["accepted"] == 14
    assert doc["plan"]["first"] is True and doc["plan"]["added"] == 14
    nft = (out / "ruleset.nft").read_text()
    zone = (out / "rpz.zone").read_text()
    for value in ("185.220.101.7", "91.219.236.0/24", "2a0b:4340:a1::/48"):
        assert value in nft
    assert "evil-c2.com" in zone and "*.phish-kit.net" in zone
    for refused in ("198.18.7.7", "0.0.0.0/4", "chu-example", "co.uk"):
        assert refused not in nft and refused not in zone
    assert doc["rendered"] == {
        "ruleset.nft": str(out / "ruleset.nft"),
        "rpz.zone": str(out / "rpz.zone"),
    }
    text = cli("sync", "--dry-run")
    assert text.code == 0
    assert "dry run: nothing was changed" in text.out
    assert "refused by guards" in text.out
    assert "plan: first sync, +14 entries" in text.out
    assert not state_dir.exists()


def test_dry_run_shows_changes_against_the_applied_state(env: Env) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in env.state.rglob("*") if p.is_file()}
    env.publish("cert", NEWER, serial=2)
    result = env.cli("sync", "--dry-run")
    assert result.code == 0
    assert "plan: +1 -0" in result.out
    assert "serial 2" in result.out
    after = {p.name: p.stat().st_mtime_ns for p in env.state.rglob("*") if p.is_file()}
    assert after == before
    assert env.enforced() == BASE_SETS


def test_guard_rejects_are_counted_in_status(env: Env) -> None:
    env.publish("cert", NEWER + "198.18.0.1\n240.0.0.1\n0.0.0.0/0\n", serial=2)
    result = env.cli("sync", "--json")
    assert result.code == 0
    assert result.json["feeds"][0]["guard_rejects"] == {"special-range": 2, "prefix-too-short": 1}
    status = env.status()
    assert status["guard_rejects"] == {"special-range": 2, "prefix-too-short": 1}
    assert status["feeds"]["cert"]["guard_rejects"] == {"special-range": 2, "prefix-too-short": 1}
    assert "198.18.0.1" not in env.enforced()["v4"]
    assert "guards: prefix-too-short 1, special-range 2" in env.cli("status").out


# --- conditional GET, mirrors ---------------------------------------------------------------


def test_unchanged_feed_is_fetched_conditionally(env: Env) -> None:
    before = applied_sets(env.state)
    record_before = (env.state / "feeds/cert/current/record.json").read_text()
    env.server.requests.clear()
    result = env.cli("sync", "--json")
    assert result.code == 0
    assert result.json["feeds"][0]["status"] == "unchanged"
    assert result.json["plan"]["added"] == 0 and result.json["plan"]["removed"] == 0
    requests = env.server.requests_for("/cert/manifest.json")
    assert len(requests) == 1
    assert requests[0].header("If-None-Match") == json.loads(record_before)["etag"]
    assert env.server.requests_for("/cert/indicators.txt") == []
    assert applied_sets(env.state) == before
    assert (env.state / "feeds/cert/current/record.json").read_text() == record_before


def test_mirror_is_used_when_the_first_url_is_down(
    publish: Callable[..., Any],
    server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
    state_dir: Path,
) -> None:
    publish("cert", BASE, serial=1)
    dead = f"http://127.0.0.1:{unused_port()}/cert/manifest.json"
    mirror = server.url("/cert/manifest.json")
    write_config({"name": "cert", "url": dead, "mirrors": [mirror]})
    result = cli("sync")
    assert result.code == 0, result
    assert enforced() == BASE_SETS
    record = json.loads((state_dir / "feeds/cert/current/record.json").read_text())
    assert record["url"] == mirror
    assert server.requests_for("/cert/manifest.json.minisig")


def test_all_mirrors_down_reports_every_url(env: Env) -> None:
    port = unused_port()
    env.config(
        url=f"http://127.0.0.1:{port}/a/manifest.json",
        mirrors=[f"http://127.0.0.1:{port}/b/manifest.json"],
    )
    result = env.refused("connect")
    assert "/a/manifest.json" in result.out and "/b/manifest.json" in result.out


def test_file_url_feed(
    publish: Callable[..., Any],
    www: Path,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    publish("cert", BASE, serial=1)
    write_config({"name": "cert", "url": (www / "cert/manifest.json").as_uri()})
    assert cli("sync").code == 0
    assert enforced() == BASE_SETS
    publish("cert", NEWER, serial=2)
    assert cli("sync").code == 0
    assert "45.155.205.99" in enforced()["v4"]
    shutil.rmtree(www / "cert")
    publish("cert", BASE, serial=1)
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "rollback"
    assert "45.155.205.99" in enforced()["v4"]


# --- single lists ------------------------------------------------------------------------------


def test_unsigned_plain_list_over_https(
    www: Path,
    https_server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    (www / "ipblocklist.txt").write_text("# feodo\n45.9.148.3\n77.91.124.0/24\nbad.c2.org\n")
    write_config(
        {
            "name": "feodo",
            "url": https_server.url("/ipblocklist.txt"),
            "format": "plain",
            "signature": "none",
            "ca_file": https_server.ca_file,
        }
    )
    result = cli("sync", "--json")
    assert result.code == 0, result.out
    assert result.json["feeds"][0]["accepted"] == 3
    sets = enforced()
    assert sets["v4"] == ["45.9.148.3"]
    assert sets["v4_nets"] == ["77.91.124.0/24"]
    assert sets["names"] == ["bad.c2.org"]
    why = cli("why", "77.91.124.20", "--json").json
    assert why["blocked"] is True
    assert why["sources"][0]["feed"] == "feodo"
    assert why["sources"][0]["ref"] == "ipblocklist.txt:3"


def test_unsigned_list_over_max_size_is_cut_off(
    www: Path,
    https_server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    (www / "list.txt").write_text("45.9.148.3\n")
    cfg = {
        "name": "feodo",
        "url": https_server.url("/list.txt"),
        "format": "plain",
        "signature": "none",
        "ca_file": https_server.ca_file,
        "max_size": "1KiB",
    }
    write_config(cfg)
    assert cli("sync").code == 0
    https_server.route("/list.txt", Reply(body=b"45.9.148.4\n" * 100_000, length=False))
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "too-large"
    assert result.json["feeds"][0]["status"] == "kept"
    assert enforced()["v4"] == ["45.9.148.3"]


def test_signed_single_list_and_its_rollback(
    www: Path,
    server: HttpServer,
    keypair: tuple[PublicKey, SecretKey],
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
    state_dir: Path,
) -> None:
    now = datetime.now(UTC)
    listing = www / "list.txt"
    listing.write_text("45.9.148.3\n*.evil-c2.com\n")
    sign_file(listing, keypair[1], now=now - timedelta(hours=1))
    write_config({"name": "sig", "url": server.url("/list.txt"), "format": "plain"})
    assert cli("sync").code == 0
    assert enforced()["wild"] == ["evil-c2.com"]
    record = json.loads((state_dir / "feeds/sig/current/record.json").read_text())
    assert record["serial"] == int((now - timedelta(hours=1)).timestamp())
    # a newer list
    listing.write_text("45.9.148.3\n45.9.148.4\n*.evil-c2.com\n")
    sign_file(listing, keypair[1], now=now)
    assert cli("sync").code == 0
    assert enforced()["v4"] == ["45.9.148.3", "45.9.148.4"]
    # an old copy, validly signed earlier: rollback
    listing.write_text("45.9.148.3\n*.evil-c2.com\n45.9.148.5\n")
    sign_file(listing, keypair[1], now=now - timedelta(hours=2))
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "rollback"
    assert enforced()["v4"] == ["45.9.148.3", "45.9.148.4"]
    # tampered list: the signature no longer matches
    listing.write_text("45.9.148.3\n45.9.148.4\n*.evil-c2.com\n1.1.1.1\n")
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "bad-signature"
    assert enforced()["v4"] == ["45.9.148.3", "45.9.148.4"]


def test_signed_list_over_max_size_is_cut_off_while_downloading(
    www: Path,
    server: HttpServer,
    keypair: tuple[PublicKey, SecretKey],
    write_config: Callable[..., Path],
    cli: Cli,
) -> None:
    listing = www / "list.txt"
    listing.write_text("".join(f"5.6.{i // 250}.{i % 250}\n" for i in range(1000)))
    sign_file(listing, keypair[1])
    write_config(
        {"name": "sig", "url": server.url("/list.txt"), "format": "plain", "max_size": "1KiB"}
    )
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "too-large"
    assert server.requests_for("/list.txt.minisig") == []  # refused before the signature


# --- the pipeline as a library (injected clock) ------------------------------------------------


@pytest.mark.parametrize("conditional", [True, False], ids=["304", "200"])
def test_expiry_of_an_unchanged_feed_is_refused(
    publish: Callable[..., Any],
    server: HttpServer,
    www: Path,
    write_config: Callable[..., Path],
    conditional: bool,
) -> None:
    """A server that keeps serving the same, now expired, manifest (a freeze) is refused the
    same way whether it answers 304 Not Modified or resends it; the copy stays enforced."""
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    publish("cert", BASE, serial=1, now=issued, expires=timedelta(days=7))
    if not conditional:  # a server without validators: always 200
        manifest = (www / "cert/manifest.json").read_bytes()
        server.route("/cert/manifest.json", Reply(body=manifest))
    config = load_config(write_config({"name": "cert", "url": server.url("/cert/manifest.json")}))
    store = StateStore(config.state_dir)
    local = overrides.load(config.local_dir)
    first = pipeline.run(config, fetcher=HttpFetcher(), store=store, local=local,
                         now=issued + timedelta(1))
    assert first.ok and first.applied
    second = pipeline.run(
        config, fetcher=HttpFetcher(), store=store, local=local, now=issued + timedelta(days=9)
    )
    outcome = second.feeds[0]
    assert outcome.stale is True
    assert outcome.status == "kept"
    assert outcome.error is not None and outcome.error.reason == "expired"
    assert not second.ok
    assert second.applied  # the last good copy is still what is enforced
    assert second.blocklist.total == len(BASE_V4) + 4
    status = store.load_status()["feeds"]["cert"]
    assert status["error"]["reason"] == "expired"
    assert status["stale"] is True


def test_feeds_not_refreshed_come_from_their_last_good_copy_without_a_download(
    publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
) -> None:
    """What the daemon relies on: `refresh` names the feeds due; the others are merged from
    their cache, never fetched, and keep the status of their last real attempt."""
    publish("a", "185.220.101.7\n", serial=1)
    publish("b", "evil.example\n", serial=1)
    config = load_config(write_config({"name": "a", "url": server.url("/a/manifest.json")},
                                      {"name": "b", "url": server.url("/b/manifest.json")},
                                      {"name": "c", "url": server.url("/c/manifest.json")}))
    store = StateStore(config.state_dir)
    local = overrides.load(config.local_dir)
    pipeline.run(config, fetcher=HttpFetcher(), store=store, local=local, refresh={"a", "b"})
    server.route("/b/manifest.json", Reply(status=503))
    assert not pipeline.run(config, fetcher=HttpFetcher(), store=store, local=local,
                            refresh={"b"}).ok  # b down (kept), c never fetched (pending)
    before = len(server.requests)

    result = pipeline.run(config, fetcher=HttpFetcher(), store=store, local=local,
                          refresh={"a"})
    assert {r.path.split("/")[1] for r in server.requests[before:]} == {"a"}
    assert [(o.name, o.status, o.refreshed) for o in result.feeds] == [
        ("a", "unchanged", True), ("b", "unchanged", False), ("c", "failed", False)]
    assert result.feeds[2].error is not None and result.feeds[2].error.reason == "pending"
    assert result.applied and result.result == "partial"
    assert sorted(result.blocklist.names) == ["evil.example"]  # b's last good copy
    feeds = store.load_status()["feeds"]
    assert (feeds["b"]["failures"], feeds["b"]["error"]["reason"]) == (1, "http-503")
    assert "c" not in feeds  # never attempted: `status` says "never synced"
    assert feeds["a"]["failures"] == 0 and feeds["a"]["last_success"] is not None
