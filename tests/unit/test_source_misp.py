"""`source: misp` against a loopback MISP stand-in over HTTPS (tests/misp_standin.py): the
documented restSearch request, paging, the change query after the first pull, the attribute
mapping, refusals that keep the last good copy, and a key that never leaks."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.httpserver import CertificateAuthority, HttpServer, Reply
from tests.conftest import CliResult
from tests.misp_standin import MispStandIn, attribute, event

KEY = "Zq3vY8xK1mN0pR7sT2uW4yA6bC9dE5fG8hJ1kL3m"  # 40 characters, as MISP's keys

Cli = Callable[..., CliResult]


def secret_file(directory: Path, text: str, name: str = "misp.key") -> Path:
    if os.geteuid() != 0:
        pytest.skip("credential files must be owned by root")
    path = directory / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def misp() -> MispStandIn:
    apt = event(1234, "APT phishing wave against hospitals", tags=("tlp:green",))
    other = event(1235, "Untagged noise", tags=("tlp:red",))
    return MispStandIn(KEY, [
        attribute(1, "185.220.101.7", "ip-dst", apt),
        attribute(2, "45.137.21.9", "ip-src", apt),
        attribute(3, "91.219.236.18|8443", "ip-dst|port", apt),
        attribute(4, "login-ameli-secure.example", "domain", apt),
        attribute(5, "beacon.example|193.42.33.14", "domain|ip", apt),
        attribute(6, "https://drop.invoice-portal.example/x.zip", "url", apt),
        attribute(7, "https://blog.vendor.example/post", "link", apt),
        attribute(8, "104.21.55.3", "ip-dst", apt, to_ids=False),
        attribute(9, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                  "sha256", apt),
        attribute(10, "46.161.27.151", "ip-dst", other),
    ])


@pytest.fixture
def server(misp: MispStandIn, ca: CertificateAuthority) -> Iterator[HttpServer]:
    with HttpServer(ca=ca) as running:
        running.route("/attributes/restSearch", misp)
        yield running


def config(write_config: Callable[..., Path], server: HttpServer, key_file: Path,
           **extra: Any) -> Path:
    feed = {"name": "cert-sante", "source": "misp", "url": server.url("/"),
            "auth_file": str(key_file), "ca_file": server.ca_file,
            "filters": {"tags": ["tlp:clear", "tlp:green"], "last": "30d", "limit": 2}}
    return write_config({**feed, **extra}, guards={"max_change": 0.9})


def test_first_pull_pages_through_the_documented_search(
    tmp_path: Path, server: HttpServer, misp: MispStandIn, write_config: Callable[..., Path],
    cli: Cli, enforced: Callable[[], dict[str, list[str]]],
) -> None:
    config(write_config, server, secret_file(tmp_path, KEY))
    assert cli("sync").code == 0
    sets = enforced()
    assert sets["v4"] == ["185.220.101.7", "193.42.33.14", "45.137.21.9", "91.219.236.18"]
    assert sets["names"] == ["beacon.example", "drop.invoice-portal.example",
                             "login-ameli-secure.example"]
    # the link, the hash, the to_ids false address and the tlp:red event are not blocked
    requests = server.requests_for("/attributes/restSearch")
    assert {r.method for r in requests} == {"POST"}
    assert all(r.header("Authorization") == KEY for r in requests)
    assert all(r.header("Content-Type") == "application/json" for r in requests)
    assert [b["page"] for b in misp.bodies] == [1, 2, 3, 4, 5]  # 9 matches, 2 a page
    first = misp.bodies[0]
    assert first == {"returnFormat": "json", "limit": 2, "page": 1, "to_ids": 1,
                     "tags": ["tlp:clear", "tlp:green"], "last": "30d"}


def test_second_pull_asks_only_for_changes_and_applies_them(
    tmp_path: Path, server: HttpServer, misp: MispStandIn, write_config: Callable[..., Path],
    cli: Cli, enforced: Callable[[], dict[str, list[str]]],
) -> None:
    config(write_config, server, secret_file(tmp_path, KEY))
    assert cli("sync").code == 0
    misp.bodies.clear()
    apt = misp.attributes[0]["_event"]
    later = 1714560000
    misp.attributes[0].update(deleted=True, timestamp=str(later))  # soft-deleted in MISP
    misp.attributes[1].update(to_ids=False, timestamp=str(later))  # no longer for detection
    misp.attributes.append(attribute(11, "2a0b:4141:820:1::7|443", "ip-src|port", apt,
                                     timestamp=later))
    assert cli("sync").code == 0
    assert misp.bodies[0]["timestamp"] == 1714550400  # the newest timestamp of the first pull
    assert misp.bodies[0]["deleted"] == [0, 1]
    assert "to_ids" not in misp.bodies[0]  # a flag switched off must come back to be seen
    sets = enforced()
    assert sets["v4"] == ["193.42.33.14", "91.219.236.18"]
    assert sets["v6"] == ["2a0b:4141:820:1::7"]
    assert misp.bodies[-1]["timestamp"] == 1714550400
    assert cli("sync").code == 0
    assert misp.bodies[-1]["timestamp"] == later  # the cursor moved on


def test_why_names_the_misp_event_and_attribute(
    tmp_path: Path, server: HttpServer, write_config: Callable[..., Path], cli: Cli,
) -> None:
    config(write_config, server, secret_file(tmp_path, KEY))
    assert cli("sync").code == 0
    answer = cli("why", "185.220.101.7", "--json").json
    assert answer["blocked"] is True
    ref = answer["sources"][0]["ref"]
    assert "MISP event 1234 5e0c1234-0000-4000-8000-000000000000" in ref
    assert "attribute a77r0001-0000-4000-8000-000000000000" in ref
    assert ref.endswith("APT phishing wave against hospitals")
    text = cli("why", "185.220.101.7").out
    assert "listed by cert-sante" in text and "MISP event 1234" in text


def test_wrong_key_is_refused_and_the_last_good_copy_kept(
    tmp_path: Path, server: HttpServer, write_config: Callable[..., Path], cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    key_file = secret_file(tmp_path, KEY)
    config(write_config, server, key_file)
    assert cli("sync").code == 0
    before = enforced()
    key_file.write_text("0000000000000000000000000000000000000000\n")
    result = cli("sync", "--json")
    assert result.code == 1
    feed = result.json["feeds"][0]
    assert feed["status"] == "kept"
    assert feed["error"]["reason"] == "http-403"
    assert "API key of an API-enabled user" in feed["error"]["hint"]
    assert enforced() == before


def test_no_key_ever_reaches_output_logs_or_state(
    tmp_path: Path, server: HttpServer, write_config: Callable[..., Path], cli: Cli,
    state_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = secret_file(tmp_path, KEY)
    config(write_config, server, key_file)
    outputs = [cli("sync", "-v"), cli("sync", "--json"), cli("status"), cli("status", "--json"),
               cli("why", "185.220.101.7", "--json")]
    key_file.write_text("wrong-key-that-is-also-secret\n")
    outputs += [cli("sync", "--json"), cli("status", "--json")]
    texts = [o.out + o.err for o in outputs] + [caplog.text]
    texts += [p.read_text(errors="replace") for p in state_dir.rglob("*") if p.is_file()]
    assert not [t for t in texts if KEY in t or "wrong-key-that-is-also-secret" in t]


def test_a_server_without_the_lab_ca_is_a_tls_refusal(
    tmp_path: Path, server: HttpServer, write_config: Callable[..., Path], cli: Cli,
) -> None:
    config(write_config, server, secret_file(tmp_path, KEY), ca_file=None)
    result = cli("sync", "--json")
    error = result.json["feeds"][0]["error"]
    assert result.code == 1 and error["reason"] == "tls" and "ca_file" in error["hint"]


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(body=b"<html>Login</html>", headers={"Content-Type": "text/html"}), "bad-json"),
    (Reply(body=b'{"name": "Not Found", "message": "x"}'), "bad-json"),
    (Reply(status=401, body=b"{}"), "http-401"),
    (Reply.redirect("/users/login"), "redirect-invalid"),
    (Reply(status=500, body=b"{}"), "http-500"),
])
def test_broken_answers_are_that_feeds_refusal(
    tmp_path: Path, server: HttpServer, write_config: Callable[..., Path], cli: Cli,
    reply: Reply, reason: str,
) -> None:
    server.route("/attributes/restSearch", reply)
    config(write_config, server, secret_file(tmp_path, KEY))
    result = cli("sync", "--json")
    error = result.json["feeds"][0]["error"]
    assert result.code == 1 and error["reason"] == reason
    assert error["hint"] and KEY not in json.dumps(result.json)


def test_filters_reach_misp_under_its_own_names(
    tmp_path: Path, server: HttpServer, misp: MispStandIn, write_config: Callable[..., Path],
    cli: Cli, enforced: Callable[[], dict[str, list[str]]],
) -> None:
    misp.warninglist = {"45.137.21.9"}
    misp.attributes[3]["_decayed"] = True
    config(write_config, server, secret_file(tmp_path, KEY),
           filters={"published": True, "warninglists": True, "exclude_decayed": True,
                    "tags": ["tlp:green"]})
    assert cli("sync").code == 0
    assert misp.bodies[0] == {"returnFormat": "json", "limit": 1000, "page": 1, "to_ids": 1,
                              "published": 1, "tags": ["tlp:green"], "enforceWarninglist": 1,
                              "includeDecayScore": 1, "excludeDecayed": 1}
    sets = enforced()
    assert "45.137.21.9" not in sets["v4"]
    assert "login-ameli-secure.example" not in sets["names"]


def test_a_stalled_server_is_a_timeout_and_the_copy_is_kept(
    tmp_path: Path, server: HttpServer, write_config: Callable[..., Path], cli: Cli,
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    config(write_config, server, secret_file(tmp_path, KEY), timeout="1s")
    assert cli("sync").code == 0
    before = enforced()
    server.route("/attributes/restSearch", Reply(delay=3, body=b"{}"))
    result = cli("sync", "--json")
    assert result.code == 1
    assert result.json["feeds"][0]["error"]["reason"] == "timeout"
    assert result.json["feeds"][0]["status"] == "kept"
    assert enforced() == before


def test_the_daemon_pulls_api_sources_too(
    tmp_path: Path, server: HttpServer, misp: MispStandIn, write_config: Callable[..., Path],
    enforced: Callable[[], dict[str, list[str]]],
) -> None:
    from agent.daemon.loop import Daemon

    path = config(write_config, server, secret_file(tmp_path, KEY))
    daemon = Daemon(str(path), rand=lambda: 0.0, own_addresses=list, watch=False)
    try:
        daemon.start()
        daemon.step()
    finally:
        daemon.close()
    assert misp.bodies and "185.220.101.7" in enforced()["v4"]
