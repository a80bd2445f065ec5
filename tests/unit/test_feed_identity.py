"""Signed single lists need a signed timestamp, can go stale (max_age), and every signed feed
can name itself, so that one key's feeds cannot be swapped for each other.

Real feed servers on 127.0.0.1 (lab/httpserver.py) and the command line, as an operator runs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.errors import VerifyError
from agent.publish import sign_file
from agent.publish.minisign import SecretKey, sign
from agent.verify import parse_manifest
from agent.verify.minisign import PublicKey
from lab.httpserver import HttpServer

Cli = Callable[..., Any]


def _list_feed(www: Path, server: HttpServer, write_config: Callable[..., Path],
               **settings: Any) -> Path:
    listing = www / "list.txt"
    write_config({"name": "sig", "url": server.url("/list.txt"), "format": "plain", **settings})
    return listing


def test_list_signed_without_timestamp_is_refused_with_an_explanation(
        www: Path, server: HttpServer, keypair: tuple[PublicKey, SecretKey],
        write_config: Callable[..., Path], cli: Cli,
        enforced: Callable[[], dict[str, list[str]]]) -> None:
    listing = _list_feed(www, server, write_config)
    listing.write_text("45.9.148.3\n")
    # as `minisign -S -t "CERT list"` signs: a trusted comment of the signer's own
    (www / "list.txt.minisig").write_text(sign(listing.read_bytes(), keypair[1],
                                               trusted_comment="CERT list"))
    result = cli("sync", "--json")
    assert result.code == 1
    error = result.json["feeds"][0]["error"]
    assert error["reason"] == "no-timestamp"
    assert "'CERT list'" in error["message"] and "replayed" in error["message"]
    assert "minisign -S" in error["hint"]
    assert enforced()["v4"] == []


def test_list_replay_same_timestamp_other_content_and_future(
        www: Path, server: HttpServer, keypair: tuple[PublicKey, SecretKey],
        write_config: Callable[..., Path], cli: Cli) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    listing = _list_feed(www, server, write_config)
    listing.write_text("45.9.148.3\n")
    sign_file(listing, keypair[1], now=now)
    assert cli("sync").code == 0
    listing.write_text("45.9.148.4\n")
    sign_file(listing, keypair[1], now=now)
    assert cli("sync", "--json").json["feeds"][0]["error"]["reason"] == "replay"
    sign_file(listing, keypair[1], now=now + timedelta(hours=1))
    assert cli("sync", "--json").json["feeds"][0]["error"]["reason"] == "future"


def test_list_max_age_makes_a_copy_stale_and_refuses_an_old_download(
        www: Path, server: HttpServer, keypair: tuple[PublicKey, SecretKey],
        write_config: Callable[..., Path], cli: Cli, state_dir: Path,
        enforced: Callable[[], dict[str, list[str]]]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    listing = _list_feed(www, server, write_config, max_age="1h")
    listing.write_text("45.9.148.3\n")
    sign_file(listing, keypair[1], now=now - timedelta(minutes=50))
    assert cli("sync").code == 0
    record = json.loads((state_dir / "feeds/sig/current/record.json").read_text())
    assert record["expires"] == (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # the publisher's list is older than max_age: a download of it is refused
    listing.write_text("45.9.148.3\n45.9.148.4\n")
    sign_file(listing, keypair[1], now=now - timedelta(minutes=40))
    write_config({"name": "sig", "url": server.url("/list.txt"), "format": "plain",
                  "max_age": "30m"})
    result = cli("sync", "--json")
    assert result.code == 1
    feed = result.json["feeds"][0]
    assert feed["error"]["reason"] == "expired" and "max_age" in feed["error"]["message"]
    assert feed["stale"] is True  # the copy enforced is past its max_age too, and stays
    assert enforced()["v4"] == ["45.9.148.3"]


def test_max_age_is_refused_where_it_means_nothing(write_config: Callable[..., Path],
                                                   cli: Cli) -> None:
    write_config({"name": "m", "url": "https://feeds.example.org/m/manifest.json",
                  "max_age": "1d"})
    result = cli("check-config")
    assert result.code == 2
    assert "only a signed single list has a max_age" in result.err


# --- feed identity ------------------------------------------------------------------------------


def test_publish_writes_the_feed_name_and_a_mismatch_is_refused(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Cli, tmp_path: Path, www: Path, keypair: tuple[PublicKey, SecretKey],
        enforced: Callable[[], dict[str, list[str]]]) -> None:
    key = tmp_path / "pub.key"
    key.write_text(keypair[1].to_file_text(None))
    payload = tmp_path / "iocs.txt"
    payload.write_text("45.9.148.3\n")
    for name in ("cert", "other"):
        assert cli("publish", "--key", key, "--out", www / name, "--feed", name,
                   "--publisher", "CERT", payload).code == 0
    manifest = parse_manifest((www / "other/manifest.json").read_bytes())
    assert manifest.feed == "other"
    # the other feed (same key, higher serial) served at cert's URL: refused
    cli("publish", "--key", key, "--out", www / "other", "--feed", "other", payload)
    write_config({"name": "cert", "url": server.url("/other/manifest.json")})
    result = cli("sync", "--json")
    assert result.code == 1
    error = result.json["feeds"][0]["error"]
    assert error["reason"] == "wrong-feed"
    assert "published for feed 'other', not for 'cert'" in error["message"]
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    assert cli("sync").code == 0
    assert enforced()["v4"] == ["45.9.148.3"]


def test_manifest_without_a_feed_name_keeps_working(publish: Callable[..., Any],
                                                     server: HttpServer,
                                                     write_config: Callable[..., Path],
                                                     cli: Cli) -> None:
    manifest = publish("cert", "45.9.148.3\n", serial=1)
    assert manifest.feed == ""
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
    assert cli("sync").code == 0


def test_list_naming_another_feed_is_refused(
        www: Path, server: HttpServer, keypair: tuple[PublicKey, SecretKey],
        write_config: Callable[..., Path], cli: Cli) -> None:
    listing = _list_feed(www, server, write_config)
    listing.write_text("45.9.148.3\n")
    sign_file(listing, keypair[1], feed="other")
    assert cli("sync", "--json").json["feeds"][0]["error"]["reason"] == "wrong-feed"
    sign_file(listing, keypair[1], feed="sig", now=datetime.now(UTC) + timedelta(seconds=1))
    assert cli("sync").code == 0


@pytest.mark.parametrize("field", ['"feed": "Bad Name"', '"feed": 3'])
def test_a_malformed_feed_field_is_refused(field: str) -> None:
    text = ('{"format": "blocklist-feed/1", "publisher": "p", "serial": 1, '
            '"issued": "2026-01-01T00:00:00Z", "expires": "2026-02-01T00:00:00Z", '
            f'"payloads": [{{"path": "a.txt", "sha256": "{"0" * 64}", "size": 0}}], {field}}}')
    with pytest.raises(VerifyError, match="field 'feed' must be a feed name"):
        parse_manifest(text.encode())


def test_a_publisher_with_control_characters_is_refused() -> None:
    text = ('{"format": "blocklist-feed/1", "publisher": "CERT\\u001b[32m all good", '
            '"serial": 1, "issued": "2026-01-01T00:00:00Z", "expires": "2026-02-01T00:00:00Z", '
            f'"payloads": [{{"path": "a.txt", "sha256": "{"0" * 64}", "size": 0}}]}}')
    with pytest.raises(VerifyError, match="without control characters"):
        parse_manifest(text.encode())
