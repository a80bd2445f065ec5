"""`source: taxii` against a real TAXII 2.1 server: OASIS's medallion (memory backend, HTTP
Basic, two objects a page) over HTTPS with the lab CA (lab/taxii.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.fetch import HttpFetcher
from lab.httpserver import CertificateAuthority
from lab.taxii import COLLECTION, TaxiiServer
from tests.conftest import CliResult

PASSWORD = "s3cret-taxii-pass-0123"
Cli = Callable[..., CliResult]


def indicator(n: int, pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{n:08d}-0000-4000-8000-000000000000",
            "created": "2024-05-01T00:00:00.000Z", "modified": "2024-05-01T00:00:00.000Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2024-05-01T00:00:00Z",
            **extra}


OBJECTS = [
    indicator(1, "[ipv4-addr:value = '185.220.101.7']"),
    indicator(2, "[domain-name:value = 'login-ameli-secure.example']"),
    indicator(3, "[url:value = 'https://drop.invoice-portal.example/x'] OR "
                 "[ipv6-addr:value = '2a0b:4141:820:1::7']"),
    indicator(4, "[ipv4-addr:value = '45.137.21.9']", revoked=True),
    indicator(5, "[ipv4-addr:value = '46.161.27.151']", valid_until="2024-06-01T00:00:00Z"),
    {"type": "malware", "spec_version": "2.1", "id": "malware--00000006-0000-4000-8000-0000000",
     "created": "2024-05-01T00:00:00.000Z", "modified": "2024-05-01T00:00:00.000Z",
     "name": "Emotet", "is_family": True},
]


@pytest.fixture
def taxii(tmp_path: Path, ca: CertificateAuthority) -> Iterator[TaxiiServer]:
    with TaxiiServer(tmp_path / "taxii", ca, users={"gateway": PASSWORD}, page_size=2,
                     objects=[dict(o) for o in OBJECTS]) as server:
        yield server


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """Every API request the agent sends (URL, headers), the real request still made."""
    calls: list[tuple[str, dict[str, str]]] = []
    real = HttpFetcher.request

    def recording(self: HttpFetcher, method: str, url: str, **kw: Any) -> Any:
        calls.append((url, dict(kw["headers"])))
        return real(self, method, url, **kw)

    monkeypatch.setattr(HttpFetcher, "request", recording)
    return calls


def auth_file(tmp_path: Path, text: str) -> Path:
    if os.geteuid() != 0:
        pytest.skip("credential files must be owned by root")
    path = tmp_path / "taxii.auth"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def configure(write_config: Callable[..., Path], taxii: TaxiiServer, secret: Path) -> None:
    write_config({"name": "cti", "source": "taxii", "url": taxii.collection_url,
                  "auth_file": str(secret), "ca_file": taxii.ca.cert_file},
                 guards={"max_change": 0.9})


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_pages_are_followed_and_revoked_or_expired_indicators_not_blocked(
    tmp_path: Path, taxii: TaxiiServer, write_config: Callable[..., Path], cli: Cli,
    enforced: Callable[[], dict[str, list[str]]], sent: list[tuple[str, dict[str, str]]],
) -> None:
    configure(write_config, taxii, auth_file(tmp_path, f"gateway:{PASSWORD}"))
    result = cli("sync", "--json")
    assert result.code == 0, result
    sets = enforced()
    assert sets["v4"] == ["185.220.101.7"]  # 45.137.21.9 revoked, 46.161.27.151 expired
    assert sets["v6"] == ["2a0b:4141:820:1::7"]
    assert sets["names"] == ["drop.invoice-portal.example", "login-ameli-secure.example"]
    assert result.json["feeds"][0]["guard_rejects"] == {"expired": 1}
    urls = [url for url, _ in sent]
    assert len(urls) == 3  # five indicators, two a page
    assert all(urlsplit(u).path == f"/api1/collections/{COLLECTION}/objects/" for u in urls)
    assert "next" not in query(urls[0]) and all("next" in query(u) for u in urls[1:])
    assert all(query(u)["match[type]"] == ["indicator"] for u in urls)
    headers = sent[0][1]
    assert headers["Accept"] == "application/taxii+json;version=2.1"
    assert headers["Authorization"].startswith("Basic ")


def test_second_pull_asks_for_what_was_added_after_the_last_one(
    tmp_path: Path, taxii: TaxiiServer, write_config: Callable[..., Path], cli: Cli,
    enforced: Callable[[], dict[str, list[str]]], sent: list[tuple[str, dict[str, str]]],
) -> None:
    configure(write_config, taxii, auth_file(tmp_path, f"gateway:{PASSWORD}"))
    assert cli("sync").code == 0
    sent.clear()
    newer = indicator(1, "[ipv4-addr:value = '185.220.101.7']", revoked=True,
                      modified="2024-06-01T00:00:00.000Z")
    taxii.add([newer, indicator(7, "[ipv4-addr:value = '193.42.33.14']")])
    assert cli("sync").code == 0
    assert query(sent[0][0])["added_after"] == ["2024-05-01T00:00:00.000000Z"]
    assert enforced()["v4"] == ["193.42.33.14"]  # the new one in, the revoked version out
    assert enforced()["names"] == ["drop.invoice-portal.example", "login-ameli-secure.example"]
    sent.clear()
    assert cli("sync").code == 0
    after = query(sent[0][0])["added_after"][0]
    assert after > "2024-05-01T00:00:00.000000Z"  # X-TAXII-Date-Added-Last of the last pull


def test_why_names_the_indicator_and_the_collection(
    tmp_path: Path, taxii: TaxiiServer, write_config: Callable[..., Path], cli: Cli,
) -> None:
    configure(write_config, taxii, auth_file(tmp_path, f"gateway:{PASSWORD}"))
    assert cli("sync").code == 0
    answer = cli("why", "185.220.101.7", "--json").json
    ref = answer["sources"][0]["ref"]
    assert COLLECTION in ref and "indicator--00000001-0000-4000-8000-000000000000" in ref


def test_wrong_password_is_a_refusal_that_names_the_fix(
    tmp_path: Path, taxii: TaxiiServer, write_config: Callable[..., Path], cli: Cli,
    state_dir: Path,
) -> None:
    configure(write_config, taxii, auth_file(tmp_path, "gateway:not-the-password"))
    result = cli("sync", "--json")
    error = result.json["feeds"][0]["error"]
    assert result.code == 1 and result.json["feeds"][0]["status"] == "failed"
    assert error["reason"] == "http-401" and "user:password" in error["hint"]
    everything = result.out + result.err + cli("status").out
    everything += "".join(p.read_text(errors="replace") for p in state_dir.rglob("*")
                          if p.is_file())
    assert "not-the-password" not in everything


def test_the_password_is_in_no_output_or_state_file(
    tmp_path: Path, taxii: TaxiiServer, write_config: Callable[..., Path], cli: Cli,
    state_dir: Path,
) -> None:
    configure(write_config, taxii, auth_file(tmp_path, f"gateway:{PASSWORD}"))
    outputs = [cli("sync", "-v", "--json"), cli("status", "--json"), cli("status")]
    texts = [o.out + o.err for o in outputs]
    texts += [p.read_text(errors="replace") for p in state_dir.rglob("*") if p.is_file()]
    assert not [t for t in texts if PASSWORD in t]
