"""The command line contract (docs/design.md §11): exit codes, --json shapes, operator messages.

Driven through agent.cli.main against real feed servers on 127.0.0.1 (lab/httpserver.py), with
the configuration in a temp directory and both backends `none`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agent.cli import build_parser
from agent.publish import sign_file
from agent.publish.minisign import SecretKey
from agent.verify.minisign import PublicKey
from lab.httpserver import HttpServer

if TYPE_CHECKING:
    from tests.conftest import CliResult

Cli = Callable[..., "CliResult"]
Enforced = Callable[[], dict[str, list[str]]]

BASE_V4 = [f"185.220.101.{i}" for i in range(1, 11)]
BASE = (
    "\n".join(
        [
            "# CERT test feed",
            *BASE_V4,
            "91.219.236.0/24",
            "evil-c2.com",
            "*.phish-kit.net",
            "198.18.7.7",
        ]
    )
    + "\n"
)


@pytest.fixture
def synced(
    publish: Callable[..., Any],
    server: HttpServer,
    write_config: Callable[..., Path],
    cli: Cli,
    enforced: Enforced,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Feed `cert` at serial 1 synced once; the operator is alice. Returns the config path."""
    monkeypatch.setenv("SUDO_USER", "alice")
    # no login session, as in a container: a developer's own login uid would come first
    monkeypatch.setattr("agent.cli.common.LOGINUID", Path("/nonexistent/loginuid"))
    publish("cert", BASE, serial=1)
    path = write_config(
        {"name": "cert", "url": server.url("/cert/manifest.json")},
        guards={"protected": ["chu-example.fr"]},
    )
    result = cli("sync")
    assert result.code == 0, result
    assert "185.220.101.3" in enforced()["v4"]
    return path


# --- allow / deny / unallow ------------------------------------------------------------------


def test_allow_removes_a_blocked_address_and_why_shows_it(
    synced: Path, cli: Cli, enforced: Enforced, tmp_path: Path
) -> None:
    added = cli("allow", "185.220.101.3", "--reason", "partner lab server", "--json")
    assert added.code == 0, added
    assert added.json["added"]["value"] == "185.220.101.3"
    assert added.json["added"]["by"] == "alice"
    assert added.json["added"]["expires"] is None
    line = (tmp_path / "local.d/cli.allow").read_text().splitlines()[-1]
    assert line.startswith("185.220.101.3 by=alice added=")
    assert line.endswith("# partner lab server")
    # not enforced before the next sync
    assert "185.220.101.3" in enforced()["v4"]
    sync = cli("sync", "--json")
    assert sync.code == 0, sync.out
    assert sync.json["overrides"]["allow"] == 1
    sets = enforced()
    assert "185.220.101.3" not in sets["v4"]
    assert "185.220.101.4" in sets["v4"]
    assert sets["allow_ips"] == ["185.220.101.3"]
    why = cli("why", "185.220.101.3", "--json")
    assert why.code == 0
    assert why.json["blocked"] is False
    (allow,) = why.json["allowed_by"]
    assert (allow["override"], allow["value"], allow["reason"], allow["by"]) == (
        "allow",
        "185.220.101.3",
        "partner lab server",
        "alice",
    )
    assert allow["where"].endswith("cli.allow:4")
    assert why.json["sources"][0]["feed"] == "cert"  # still listed by the feed
    text = cli("why", "185.220.101.3")
    assert "185.220.101.3: not blocked" in text.out
    assert "allowed by" in text.out and "partner lab server" in text.out and "alice" in text.out


def test_unallow_restores_the_block(synced: Path, cli: Cli, enforced: Enforced) -> None:
    assert cli("allow", "185.220.101.3", "--reason", "test").code == 0
    assert cli("allow", "evil-c2.com", "--reason", "false positive").code == 0
    assert cli("sync").code == 0
    assert "185.220.101.3" not in enforced()["v4"]
    assert "evil-c2.com" not in enforced()["names"]
    removed = cli("unallow", "185.220.101.3", "--json")
    assert removed.code == 0
    assert removed.json["removed"] == 1
    assert cli("sync").code == 0
    assert "185.220.101.3" in enforced()["v4"]
    assert "evil-c2.com" not in enforced()["names"]  # the other allow stays
    again = cli("unallow", "185.220.101.3")
    assert again.code == 1
    assert "not in the command-line allow list" in again.out


def test_deny_adds_a_local_block(synced: Path, cli: Cli, enforced: Enforced) -> None:
    assert cli("deny", "45.9.148.77", "--reason", "seen in our logs").code == 0
    assert cli("deny", "*.ransom-gang.org", "--reason", "ARS alert").code == 0
    assert cli("sync").code == 0
    sets = enforced()
    assert "45.9.148.77" in sets["v4"]
    assert "ransom-gang.org" in sets["wild"]
    why = cli("why", "dl.ransom-gang.org", "--json").json
    assert why["blocked"] is True
    assert why["enforced"] == [{"set": "wild", "entry": "*.ransom-gang.org"}]
    local = [s for s in why["sources"] if s["feed"] == "local deny"]
    assert local and local[0]["reason"] == "ARS alert" and local[0]["by"] == "alice"
    assert cli("undeny", "45.9.148.77").code == 0
    assert cli("sync").code == 0
    assert "45.9.148.77" not in enforced()["v4"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("fr", "public suffix"),
        ("www.chu-example.fr", "protected"),
        ("0.0.0.0/0", "shorter than /8"),
    ],
)
def test_deny_refused_by_the_guards(
    synced: Path, cli: Cli, tmp_path: Path, value: str, reason: str
) -> None:
    result = cli("deny", value, "--reason", "oops")
    assert result.code == 2
    assert "refusing to deny" in result.err and reason in result.err
    assert not (tmp_path / "local.d/cli.deny").exists()


def test_override_usage_errors(synced: Path, cli: Cli) -> None:
    assert cli("allow", "185.220.101.3").code == 2  # --reason is required
    bad = cli("allow", "not a value!", "--reason", "x")
    assert bad.code == 2
    assert "not a valid" in bad.err
    assert cli("allow", "1.2.3.4", "--reason", "x", "--for", "soon").code == 2


def test_allow_for_a_duration_writes_an_expiry(synced: Path, cli: Cli, tmp_path: Path) -> None:
    before = int(time.time())
    result = cli("allow", "185.220.101.5", "--reason", "maintenance", "--for", "1h", "--json")
    assert result.code == 0
    expires = result.json["added"]["expires"]
    stamp = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert before + 3600 <= stamp <= int(time.time()) + 3600
    text = (tmp_path / "local.d/cli.allow").read_text()
    assert f"185.220.101.5 expires={expires} by=alice" in text


def test_expired_override_is_ignored(
    synced: Path, cli: Cli, enforced: Enforced, tmp_path: Path
) -> None:
    (tmp_path / "local.d").mkdir(exist_ok=True)
    (tmp_path / "local.d/hand.allow").write_text(
        "185.220.101.6 expires=2020-01-01T00:00:00Z by=bob # old exception\n"
        "185.220.101.7 by=bob # current exception\n"
    )
    result = cli("sync", "--json")
    assert result.code == 0
    assert result.json["overrides"]["expired"] == 1
    assert result.json["overrides"]["allow"] == 1
    sets = enforced()
    assert "185.220.101.6" in sets["v4"]
    assert "185.220.101.7" not in sets["v4"]
    why = cli("why", "185.220.101.6", "--json").json
    assert why["blocked"] is True and why["allowed_by"] == []


# --- why ---------------------------------------------------------------------------------------


def test_why_exact_address(synced: Path, cli: Cli) -> None:
    result = cli("why", "185.220.101.2", "--json")
    assert result.code == 0
    doc = result.json
    assert set(doc) == {
        "value",
        "type",
        "blocked",
        "enforced",
        "sources",
        "allowed_by",
        "guard",
        "applied",
    }
    assert (doc["value"], doc["type"], doc["blocked"], doc["applied"]) == (
        "185.220.101.2",
        "ipv4",
        True,
        True,
    )
    assert doc["enforced"] == [{"set": "v4", "entry": "185.220.101.2"}]
    assert doc["sources"] == [
        {"feed": "cert", "serial": 1, "entry": "185.220.101.2", "ref": "indicators.txt:3"}
    ]
    text = cli("why", "185.220.101.2")
    assert text.out.splitlines()[0] == "185.220.101.2: BLOCKED"
    assert "listed by cert serial 1: 185.220.101.2 (indicators.txt:3)" in text.out


def test_why_address_inside_a_blocked_prefix(synced: Path, cli: Cli) -> None:
    doc = cli("why", "91.219.236.200", "--json").json
    assert doc["blocked"] is True
    assert doc["enforced"] == [{"set": "v4_nets", "entry": "91.219.236.0/24"}]
    assert doc["sources"][0]["entry"] == "91.219.236.0/24"
    assert doc["sources"][0]["ref"] == "indicators.txt:12"
    assert cli("why", "91.219.237.1", "--json").json["blocked"] is False


def test_why_subdomain_of_a_wildcard(synced: Path, cli: Cli) -> None:
    doc = cli("why", "login.secure.phish-kit.net", "--json").json
    assert doc["blocked"] is True
    assert doc["type"] == "domain"
    assert doc["enforced"] == [{"set": "wild", "entry": "*.phish-kit.net"}]
    assert doc["sources"][0]["entry"] == "*.phish-kit.net"
    # an exact name does not cover its subdomains
    assert cli("why", "evil-c2.com", "--json").json["blocked"] is True
    assert cli("why", "www.evil-c2.com", "--json").json["blocked"] is False


def test_why_value_refused_by_the_guards(synced: Path, cli: Cli) -> None:
    doc = cli("why", "198.18.7.7", "--json").json
    assert doc["blocked"] is False
    assert doc["guard"]
    assert {g["reason"] for g in doc["guard"]} == {"special-range"}
    assert any(g["feed"] == "cert" for g in doc["guard"])
    assert "benchmarking" in doc["guard"][0]["detail"]
    text = cli("why", "198.18.7.7")
    assert "not blocked" in text.out and "refused by guard rails" in text.out
    protected = cli("why", "mail.chu-example.fr", "--json").json
    assert protected["blocked"] is False
    assert protected["guard"][0]["reason"] == "protected"


def test_why_unknown_value(synced: Path, cli: Cli) -> None:
    doc = cli("why", "45.80.1.1", "--json").json
    assert doc["blocked"] is False
    assert doc["sources"] == [] and doc["enforced"] == [] and doc["guard"] == []
    assert cli("why", "harmless.example.org").out.strip() == "harmless.example.org: not blocked"


def test_why_before_any_sync_and_bad_value(write_config: Callable[..., Path], cli: Cli) -> None:
    write_config()
    doc = cli("why", "185.220.101.2", "--json")
    assert doc.code == 0
    assert doc.json["applied"] is False and doc.json["blocked"] is False
    assert "nothing has been applied yet" in cli("why", "185.220.101.2").out
    bad = cli("why", "not a value!")
    assert bad.code == 2
    assert "not a valid" in bad.err
    assert "Traceback" not in bad.err


# --- verify --------------------------------------------------------------------------------------


def test_verify_a_good_feed(
    publish: Callable[..., Any],
    server: HttpServer,
    keypair: tuple[PublicKey, SecretKey],
    cli: Cli,
    tmp_path: Path,
) -> None:
    publish("cert", BASE, "45.9.148.3\nbad.c2.org\n", serial=7, publisher="CERT Santé")
    url = server.url("/cert/manifest.json")
    result = cli("verify", url, "--key", keypair[0].to_text(), "--json")
    assert result.code == 0, result
    doc = result.json
    assert (doc["valid"], doc["kind"], doc["publisher"], doc["serial"]) == (
        True,
        "manifest",
        "CERT Santé",
        7,
    )
    assert doc["key_id"] == keypair[0].key_id_hex
    assert [p["path"] for p in doc["payloads"]] == ["indicators.txt", "indicators-2.txt"]
    assert doc["payloads"][0]["counts"] == {"ipv4": 11, "ipv4_prefix": 1, "domain": 2, "rejects": 0}
    assert doc["payloads"][1]["counts"] == {"ipv4": 1, "domain": 1, "rejects": 0}
    assert doc["payloads"][0]["size"] == len(BASE.encode())
    text = cli("verify", url, "--key", keypair[0].to_text())
    assert text.code == 0
    assert text.out.startswith(f"OK: signature by key {keypair[0].key_id_hex}")
    assert "serial:    7" in text.out
    # a .pub file as --key, and a local directory as the target
    pub = tmp_path / "publisher.pub"
    pub.write_text(keypair[0].to_file_text())
    local = cli("verify", tmp_path / "www/cert", "--key", pub, "--json")
    assert local.code == 0, local
    assert local.json["serial"] == 7
    assert local.json["url"].startswith("file://")


def test_verify_refusals(
    publish: Callable[..., Any],
    server: HttpServer,
    www: Path,
    keypair: tuple[PublicKey, SecretKey],
    other_keypair: tuple[PublicKey, SecretKey],
    cli: Cli,
) -> None:
    key = keypair[0].to_text()
    url = server.url("/cert/manifest.json")
    publish(
        "cert", BASE, serial=1, now=datetime.now(UTC) - timedelta(days=8), expires=timedelta(days=7)
    )
    expired = cli("verify", url, "--key", key)
    assert expired.code == 1
    assert "expired at" in expired.err
    as_json = cli("verify", url, "--key", key, "--json")
    assert as_json.code == 1
    assert as_json.json["error"]["reason"] == "expired"

    publish("cert", BASE, serial=2)
    manifest = www / "cert/manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"CERT Test", b"CERT Evil"))
    tampered = cli("verify", url, "--key", key, "--json")
    assert tampered.code == 1
    assert tampered.json["error"]["reason"] == "bad-signature"
    assert "does not match the data" in tampered.err

    publish("cert", BASE, serial=3)
    (www / "cert/indicators.txt").write_text(BASE.replace("185.220.101.1\n", "185.220.101.9\n"))
    swapped = cli("verify", url, "--key", key, "--json")
    assert swapped.code == 1
    assert swapped.json["error"]["reason"] == "payload-hash"

    publish("cert", BASE, serial=4, now=datetime.now(UTC) + timedelta(hours=1))
    future = cli("verify", url, "--key", key, "--json")
    assert future.code == 1
    assert future.json["error"]["reason"] == "future"

    publish("cert", BASE, serial=5)
    unknown = cli("verify", url, "--key", other_keypair[0].to_text())
    assert unknown.code == 1
    assert "not a trusted key" in unknown.err
    assert cli("verify", url, "--key", key).code == 0

    missing = cli("verify", server.url("/nothing/manifest.json"), "--key", key, "--json")
    assert missing.code == 1
    assert missing.json["error"]["reason"] == "http-404"


def test_verify_signed_single_list(
    www: Path, server: HttpServer, keypair: tuple[PublicKey, SecretKey], cli: Cli
) -> None:
    listing = www / "list.txt"
    listing.write_text("45.9.148.3\n*.evil-c2.com\n")
    sign_file(listing, keypair[1])
    result = cli("verify", server.url("/list.txt"), "--key", keypair[0].to_text(), "--json")
    assert result.code == 0, result
    assert result.json["kind"] == "signed-list"
    assert result.json["counts"] == {"ipv4": 1, "domain": 1, "rejects": 0}
    listing.write_text("45.9.148.3\n*.evil-c2.com\n1.1.1.1\n")
    assert cli("verify", server.url("/list.txt"), "--key", keypair[0].to_text()).code == 1


def test_verify_without_a_key_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("-c", tmp_path / "missing.yaml", "verify", "https://127.0.0.1:1/manifest.json")
    assert result.code == 2
    assert "--key" in result.err


def test_keygen_publish_verify_round_trip(cli: Cli, tmp_path: Path) -> None:
    prefix = tmp_path / "keys/publisher"
    (tmp_path / "keys").mkdir()
    made = cli("keygen", "--out", prefix, "--json")
    assert made.code == 0, made
    assert made.json["encrypted"] is False
    pub_line = made.json["public_key"]
    assert Path(made.json["pub"]).read_text().splitlines()[1] == pub_line
    assert (Path(made.json["key"]).stat().st_mode & 0o777) == 0o600
    assert cli("keygen", "--out", prefix).code == 2  # never overwrites a key

    payload = tmp_path / "indicators.txt"
    payload.write_text("45.9.148.3\n77.91.124.0/24\n*.evil-c2.com\n")
    feed = tmp_path / "feed"
    published = cli(
        "publish",
        "--key",
        f"{prefix}.key",
        "--out",
        feed,
        "--serial",
        "3",
        "--expires",
        "2d",
        "--publisher",
        "GHT Sud",
        "--format",
        "plain",
        payload,
        "--json",
    )
    assert published.code == 0, published
    assert published.json["serial"] == 3
    assert published.json["payloads"] == ["indicators.txt"]

    verified = cli("verify", feed, "--key", f"{prefix}.pub", "--json")
    assert verified.code == 0, verified
    doc = verified.json
    assert (doc["publisher"], doc["serial"]) == ("GHT Sud", 3)
    expires = datetime.fromisoformat(doc["expires"])
    assert timedelta(days=2) - timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(2)
    assert doc["payloads"][0]["format"] == "plain"
    assert doc["payloads"][0]["counts"] == {"ipv4": 1, "ipv4_prefix": 1, "domain": 1, "rejects": 0}
    # the next publish defaults to serial 4; a lower serial is refused
    assert (
        cli("publish", "--key", f"{prefix}.key", "--out", feed, "--serial", "2", payload).code == 2
    )
    assert cli("publish", "--key", f"{prefix}.key", "--out", feed, payload).code == 0
    assert cli("verify", feed, "--key", pub_line, "--json").json["serial"] == 4


# --- parse ---------------------------------------------------------------------------------------


def test_parse_json_shape(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text(
        "# comment\n185.220.101.1\n*.evil-c2.com\nnot valid!\n"
        "2A0B:4340:A1::/48\nplain.example.org\n"
    )
    result = cli("parse", "--format", "plain", source, "--json")
    assert result.code == 0, result
    doc = result.json
    assert doc["format"] == "plain"
    by_value = {i["value"]: i for i in doc["indicators"]}
    assert by_value["185.220.101.1"]["type"] == "ipv4"
    assert by_value["2a0b:4340:a1::/48"]["type"] == "ipv6"
    assert by_value["evil-c2.com"]["type"] == "domain"
    assert by_value["evil-c2.com"]["subdomains"] is True
    assert by_value["plain.example.org"]["subdomains"] is False
    assert len(doc["rejects"]) == 1
    (reject,) = doc["rejects"]
    assert int(reject["line"]) == 4
    assert "not a value this format knows" in reject["reason"]
    text = cli("parse", source)
    assert "domain\t*.evil-c2.com" in text.out
    assert f"{source}:4:" in text.err
    assert "4 indicators, 1 rejected" in text.err
    missing = cli("parse", tmp_path / "nope.txt")
    assert missing.code == 2


def test_parse_hosts_format(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "hosts"
    source.write_text("127.0.0.1 localhost\n0.0.0.0 ads.tracker.com evil-c2.com\n")
    doc = cli("parse", "--format", "hosts", source, "--json").json
    assert [i["value"] for i in doc["indicators"]] == ["ads.tracker.com", "evil-c2.com"]
    assert doc["rejects"] == []


# --- configuration --------------------------------------------------------------------------


def test_check_config_on_a_good_config(
    write_config: Callable[..., Path], cli: Cli, server: HttpServer
) -> None:
    path = write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    result = cli("check-config", "--json")
    assert result.code == 0, result
    assert result.json == {"config": str(path), "valid": True, "feeds": 1, "warnings": []}
    assert cli("-c", path, "check-config").code == 0


def test_config_errors_exit_2_with_file_and_line(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "feeds:\n"
        "  - name: cert\n"
        "    url: https://feeds.example.org/cert/manifest.json\n"
        "    trusted_key: RWQ\n"
        "guards:\n"
        "  max_change: 2\n"
    )
    for command in (("check-config",), ("sync",), ("status",), ("why", "1.2.3.4")):
        result = cli("-c", path, *command)
        assert result.code == 2, (command, result)
        assert f"{path}:5:" in result.err  # the typo
        assert f"{path}:7:" in result.err  # the ratio
        assert "trusted_key" in result.err
    as_json = cli("-c", path, "check-config", "--json")
    assert as_json.code == 2
    assert as_json.json["error"]["reason"] == "config"
    missing = cli("-c", tmp_path / "nope.yaml", "sync")
    assert missing.code == 2
    assert "no such configuration file" in missing.err
    assert not (tmp_path / "state").exists()


def test_unknown_backend_is_a_config_error(write_config: Callable[..., Path], cli: Cli) -> None:
    write_config(dns={"backend": "powerdns"})
    result = cli("check-config")
    assert result.code == 2
    assert "dns.backend" in result.err


# --- help, usage ------------------------------------------------------------------------------


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_command_has_help(cli: Cli) -> None:
    commands = _commands()
    assert set(commands) >= {
        "sync",
        "verify",
        "parse",
        "status",
        "why",
        "allow",
        "deny",
        "unallow",
        "keygen",
        "publish",
        "check-config",
    }
    top = cli("--help")
    assert top.code == 0
    assert "exit codes" in top.out
    for command in commands:
        result = cli(command, "--help")
        assert result.code == 0, command
        assert re.search(rf"usage: blocklist-agent {re.escape(command)}\b", result.out), command


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli().code == 2
    assert cli("no-such-command").code == 2
    assert cli("sync", "--bogus").code == 2
    assert cli("publish", "--key", "k").code == 2


def test_sync_json_is_one_document(synced: Path, cli: Cli) -> None:
    result = cli("sync", "--json")
    doc = json.loads(result.out)
    assert set(doc) >= {"result", "dry_run", "applied", "feeds", "overrides", "enforced", "plan"}
    assert doc["result"] == "ok"
    assert doc["feeds"][0]["guard_rejects"] == {"special-range": 1}
    quiet = cli("sync")
    assert quiet.code == 0
    assert quiet.out == ""  # quiet on success
