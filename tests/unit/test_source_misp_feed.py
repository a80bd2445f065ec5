"""`source: misp-feed`: a MISP feed directory (manifest.json, one <uuid>.json per event,
hashes.csv) built from real MISP events, served over HTTPS by the lab server or read from disk;
only events whose timestamp changed are downloaded again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from lab.httpserver import HttpServer
from tests.conftest import CliResult

DATA = Path(__file__).resolve().parent.parent / "data" / "sources"
XORIST = "57c4445b-c548-4654-af0b-4be3950d210f"  # a CIRCL OSINT event: hashes and links only
PHISH = "5f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
Cli = Callable[..., CliResult]


def build_feed(directory: Path, *uuids: str) -> Path:
    """A feed directory as MISP exports one: events, their manifest, hashes.csv."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for uuid in uuids:
        shutil.copy(DATA / f"{uuid}.json", directory / f"{uuid}.json")
        event = json.loads((DATA / f"{uuid}.json").read_text())["Event"]
        manifest[uuid] = {key: event[key] for key in
                          ("info", "Orgc", "Tag", "date", "analysis", "threat_level_id",
                           "timestamp")}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "hashes.csv").write_text("0749bae92ca336a02c83d126e04ec628," + XORIST + "\n")
    return directory


def edit_event(directory: Path, uuid: str, timestamp: str, value: str) -> None:
    path = directory / f"{uuid}.json"
    document = json.loads(path.read_text())
    document["Event"]["timestamp"] = timestamp
    document["Event"]["Attribute"].append(
        {"uuid": "6a000001-0000-4000-8000-0000000000ff", "type": "ip-dst", "to_ids": True,
         "value": value, "timestamp": timestamp, "category": "Network activity"})
    path.write_text(json.dumps(document))
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest[uuid]["timestamp"] = timestamp
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_only_changed_events_are_downloaded_again(
    www: Path, https_server: HttpServer, write_config: Callable[..., Path], cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    feed = build_feed(www / "feed", XORIST, PHISH)
    write_config({"name": "osint", "source": "misp-feed", "url": https_server.url("/feed/"),
                  "ca_file": https_server.ca_file}, guards={"max_change": 0.9})
    assert cli("sync").code == 0
    assert "185.220.101.7" in enforced()["v4"]
    assert "104.21.55.3" not in enforced()["v4"]  # to_ids false
    assert "onedrive.live.com" not in enforced()["names"]  # deleted
    assert {r.path for r in https_server.requests} == {
        "/feed/manifest.json", f"/feed/{XORIST}.json", f"/feed/{PHISH}.json"}

    https_server.requests.clear()
    assert cli("sync").code == 0
    assert [r.path for r in https_server.requests] == ["/feed/manifest.json"]

    https_server.requests.clear()
    edit_event(feed, PHISH, "1714600000", "193.42.33.99")
    assert cli("sync").code == 0
    assert [r.path for r in https_server.requests] == ["/feed/manifest.json",
                                                       f"/feed/{PHISH}.json"]
    assert "193.42.33.99" in enforced()["v4"]

    manifest = json.loads((feed / "manifest.json").read_text())
    del manifest[PHISH]  # the publisher withdrew the event
    (feed / "manifest.json").write_text(json.dumps(manifest))
    assert cli("sync", "--force").code == 0
    assert enforced()["v4"] == []


def test_why_names_the_feed_event(
    www: Path, https_server: HttpServer, write_config: Callable[..., Path], cli: Cli,
) -> None:
    build_feed(www / "feed", PHISH)
    write_config({"name": "osint", "source": "misp-feed",
                  "url": https_server.url("/feed/manifest.json"),
                  "ca_file": https_server.ca_file})
    assert cli("sync").code == 0
    ref = cli("why", "beacon.example", "--json").json["sources"][0]["ref"]
    assert ref.endswith(f"MISP event {PHISH}, attribute 6a000001-0000-4000-8000-000000000007: "
                        "Phishing and C2 against healthcare providers")


def test_a_local_feed_directory(
    tmp_path: Path, write_config: Callable[..., Path], cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    feed = build_feed(tmp_path / "usb" / "feed", PHISH)
    write_config({"name": "osint", "source": "misp-feed", "url": feed.as_uri() + "/"})
    assert cli("sync").code == 0
    assert "193.42.33.15" in enforced()["v4"]


def test_a_manifest_naming_files_outside_the_directory_is_refused(
    www: Path, https_server: HttpServer, write_config: Callable[..., Path], cli: Cli,
) -> None:
    feed = build_feed(www / "feed", PHISH)
    (feed / "manifest.json").write_text(json.dumps({"../../etc/passwd": {"timestamp": "1"}}))
    write_config({"name": "osint", "source": "misp-feed", "url": https_server.url("/feed/"),
                  "ca_file": https_server.ca_file})
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "bad-json"
    assert all("passwd" not in r.path for r in https_server.requests)
