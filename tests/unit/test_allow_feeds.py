"""`role: allow` feeds: known-good lists (MISP warninglists) whose entries no feed can block,
shown by `why`, and held like any plan when they would unblock too much at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.httpserver import HttpServer
from tests.conftest import CliResult

DATA = Path(__file__).resolve().parent.parent / "data" / "sources"
Cli = Callable[..., CliResult]


def known_good(tmp_path: Path) -> dict[str, Any]:
    return {"name": "known-good", "role": "allow", "format": "misp-warninglist",
            "signature": "none", "url": (DATA / "cloudflare-warninglist.json").as_uri()}


def test_entries_of_an_allow_feed_are_never_blocked(
    tmp_path: Path, server: HttpServer, publish: Callable[..., Any],
    write_config: Callable[..., Path], cli: Cli, enforced: Callable[[], dict[str, list[str]]],
) -> None:
    publish("cert", "185.220.101.7\n104.16.5.5\n104.16.0.0/12\n2606:4700::1111\n", serial=1)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")},
                 known_good(tmp_path))
    assert cli("sync").code == 0
    sets = enforced()
    assert sets["v4"] == ["185.220.101.7"]
    # 104.16.0.0/12 minus Cloudflare's 104.16.0.0/13 and 104.24.0.0/14
    assert sets["v4_nets"] == ["104.28.0.0/14"]
    assert sets["v6"] == []
    answer = cli("why", "104.16.5.5", "--json").json
    assert answer["blocked"] is False
    assert answer["allowed_by"] == [{"feed": "known-good", "serial": answer["allowed_by"][0][
        "serial"], "entry": "104.16.0.0/13", "ref": answer["allowed_by"][0]["ref"]}]
    assert [s["entry"] for s in answer["sources"]] == ["104.16.5.5", "104.16.0.0/12"]
    assert "allowed by feed known-good: 104.16.0.0/13" in cli("why", "104.16.5.5").out


def test_an_allow_list_of_host_names_covers_their_subdomains(
    tmp_path: Path, server: HttpServer, publish: Callable[..., Any],
    write_config: Callable[..., Path], cli: Cli, enforced: Callable[[], dict[str, list[str]]],
) -> None:
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"name": "file sharing", "type": "hostname",
                                 "list": ["raw.githubusercontent.com", "onedrive.live.com"]}))
    publish("cert", "raw.githubusercontent.com\nx.onedrive.live.com\nevil-c2.com\n", serial=1)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json")},
                 {**known_good(tmp_path), "url": hosts.as_uri()})
    assert cli("sync").code == 0
    assert enforced()["names"] == ["evil-c2.com"]
    assert enforced()["allow_wild"] == ["onedrive.live.com", "raw.githubusercontent.com"]


def test_an_allow_feed_that_would_unblock_too_much_is_held(
    tmp_path: Path, server: HttpServer, publish: Callable[..., Any],
    write_config: Callable[..., Path], cli: Cli, enforced: Callable[[], dict[str, list[str]]],
) -> None:
    inside = [f"104.16.{i}.9" for i in range(1, 16)]
    publish("cert", "\n".join([*inside, "185.220.101.7", "185.220.101.8"]) + "\n", serial=1)
    cert = {"name": "cert", "url": server.url("/cert/manifest.json")}
    write_config(cert)
    assert cli("sync").code == 0
    write_config(cert, known_good(tmp_path))
    result = cli("sync")
    assert result.code == 1 and "HELD" in result.out
    assert len(enforced()["v4"]) == 17  # nothing unblocked until an operator agrees
    assert cli("sync", "--force").code == 0
    assert enforced()["v4"] == ["185.220.101.7", "185.220.101.8"]
