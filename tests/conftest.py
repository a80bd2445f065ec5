"""Shared fixtures for the pipeline and command-line tests, and the test kinds as markers.

Everything runs for real: feeds are published with agent.publish into a directory that a real
HTTP(S) server on 127.0.0.1 serves (lab/httpserver.py), the agent fetches them over a socket,
and the command line is driven through agent.cli.main with the configuration written to a temp
directory (firewall and dns backends `none`, so nothing outside tmp_path is touched).

    def test_x(publish, server, write_config, cli):
        publish("cert", "185.220.101.7\\n", serial=1)
        write_config({"name": "cert", "url": server.url("/cert/manifest.json")})
        assert cli("sync").code == 0

Kinds (registered in pyproject.toml) are given here, so a test file never has to remember them:
`lab` for tests that need root and the namespace lab, `system` for the product seen from outside
(package, demo); the rest is the unit suite, `pytest -m "not lab and not system"`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import publish as publish_mod
from agent.cli import main
from agent.publish import minisign
from agent.publish.minisign import SecretKey
from agent.verify import Manifest, PublicKey
from lab.httpserver import CertificateAuthority, HttpServer
from tests.state_helpers import applied_sets

__all__ = ["CliResult"]

# --- test kinds ------------------------------------------------------------------------------

# The folder says the kind: tests/unit/ (pure, fast), tests/lab/ (root and network
# namespaces), tests/system/ (the package, the demo). A unit-folder test that uses a lab
# fixture is still a lab test.
TESTS = Path(__file__).resolve().parent


def _kind_folder(path: Path) -> str | None:
    """The first folder below tests/ that holds the file, if any."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test `lab` or `system` by its file, folder, fixtures or a `root` marker.

    A test using the lab fixtures is a lab test wherever it lives. `root` stays an alias both
    ways (an explicit `root` outside the system tests means lab; every lab test gets `root`),
    so `-m "not root"` keeps deselecting what it always did.
    """
    # Imported here, not at the top: a test module registers lab.pytest_plugin as a plugin while
    # it is collected, and pytest cannot rewrite the asserts of a module imported before that.
    from lab.pytest_plugin import LAB_FIXTURES

    for item in items:
        folder = _kind_folder(item.path)
        if folder == "system":
            item.add_marker(pytest.mark.system)
            continue
        fixtures = getattr(item, "fixturenames", ())
        if (
            folder == "lab"
            or any(name in fixtures for name in LAB_FIXTURES)
            or item.get_closest_marker("root") is not None
        ):
            item.add_marker(pytest.mark.lab)
            if item.get_closest_marker("root") is None:
                item.add_marker(pytest.mark.root)



@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would turn every loopback test into a proxy test."""
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv("BLOCKLIST_AGENT_CONFIG", raising=False)


# --- keys ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keypair() -> tuple[PublicKey, SecretKey]:
    """The publisher's key pair, trusted by every feed `write_config` writes by default."""
    return minisign.generate_keypair()


@pytest.fixture(scope="session")
def other_keypair() -> tuple[PublicKey, SecretKey]:
    """A key nobody trusts."""
    return minisign.generate_keypair()


# --- feed server -----------------------------------------------------------------------------


@pytest.fixture
def www(tmp_path: Path) -> Path:
    """The directory the feed server serves; one sub-directory per feed."""
    directory = tmp_path / "www"
    directory.mkdir()
    return directory


@pytest.fixture
def server(www: Path) -> Iterator[HttpServer]:
    with HttpServer(root=www) as running:
        yield running


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https_server(www: Path, ca: CertificateAuthority) -> Iterator[HttpServer]:
    """The same directory over HTTPS, with a certificate from a CA the system does not trust."""
    with HttpServer(root=www, ca=ca) as running:
        yield running


Publish = Callable[..., Manifest]


@pytest.fixture
def publish(www: Path, tmp_path: Path, keypair: tuple[PublicKey, SecretKey]) -> Publish:
    """publish(feed, *texts, serial=None, expires=7 days, now=None, key=None, fmt="plain").

    Writes each text as a payload (indicators.txt, indicators-2.txt, ...) and publishes a signed
    feed directory www/FEED/ (manifest.json + manifest.json.minisig) with agent.publish.publish.
    `now` defaults to the real clock, since the CLI verifies against the real clock.
    """
    counter = [0]

    def do(
        feed: str,
        *texts: str,
        serial: int | None = None,
        expires: timedelta = timedelta(days=7),
        now: datetime | None = None,
        key: SecretKey | None = None,
        fmt: str = "plain",
        publisher: str = "CERT Test",
    ) -> Manifest:
        counter[0] += 1
        src = tmp_path / "src" / f"{feed}-{counter[0]}"
        src.mkdir(parents=True)
        files = []
        for index, text in enumerate(texts, 1):
            name = "indicators.txt" if index == 1 else f"indicators-{index}.txt"
            (src / name).write_text(text, encoding="utf-8")
            files.append(src / name)
        return publish_mod.publish(
            files,
            out_dir=www / feed,
            key=key or keypair[1],
            publisher=publisher,
            serial=serial,
            expires=expires,
            now=now or datetime.now(UTC),
            formats={f.name: fmt for f in files},
        )

    return do


# --- configuration ---------------------------------------------------------------------------


@pytest.fixture
def write_config(
    tmp_path: Path, keypair: tuple[PublicKey, SecretKey], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """write_config(*feeds, **top_level) -> Path of tmp_path/agent.yaml.

    Feeds are dicts of agent.yaml feed settings ({"name": ..., "url": ...}); a signed feed
    without trusted_keys trusts `keypair` (an API source, `source: misp` etc., gets no keys).
    state_dir is tmp_path/state, local_dir tmp_path/local.d; backends are `none`. Top-level keyword
    arguments replace or (for dict sections) update the defaults, e.g. guards={"max_change": 0.3}.
    The file also becomes the default configuration of `cli` (BLOCKLIST_AGENT_CONFIG).
    """

    def do(*feeds: dict[str, Any], **overrides: Any) -> Path:
        doc: dict[str, Any] = {
            "state_dir": str(tmp_path / "state"),
            "local_dir": str(tmp_path / "local.d"),
            "feeds": [],
            "guards": {"max_change": 0.5},
            "firewall": {"backend": "none"},
            "dns": {"backend": "none"},
        }
        for entry in feeds:
            entry = dict(entry)
            entry.setdefault("timeout", "5s")
            signed = entry.get("source", "signed") == "signed"
            if signed and entry.get("signature", "minisign") != "none":
                entry.setdefault("trusted_keys", [keypair[0].to_text()])
            doc["feeds"].append(entry)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        monkeypatch.setenv("BLOCKLIST_AGENT_CONFIG", str(path))
        return path

    return do


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def enforced(state_dir: Path) -> Callable[[], dict[str, list[str]]]:
    """enforced() -> the sets recorded in state_dir (applied.json): exactly what is enforced."""

    def read() -> dict[str, list[str]]:
        return applied_sets(state_dir)

    return read



# --- command line ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """cli(*args) runs agent.cli.main(list(args)) and returns (code, stdout, stderr)."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
