"""The configuration of API sources and allow feeds: the contract's keys, https only, and a
credential file that must be root's alone (check-config exits 2 otherwise)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import loads
from agent.config.model import MispFilters
from tests.config_helpers import KEY, problems_of, y
from tests.conftest import CliResult

Cli = Callable[..., CliResult]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("credential files must be owned by root")
    path = tmp_path / "cert-sante.key"
    path.write_text("Zq3vY8xK1mN0pR7sT2uW4yA6bC9dE5fG8hJ1kL3m\n")
    path.chmod(0o600)
    return path


def test_the_contract_of_issue_15(key_file: Path) -> None:
    config = loads(y(f"""
        feeds:
          - name: cert-sante
            source: misp
            url: https://misp.example.org
            auth_file: {key_file}
            filters: {{to_ids: true, published: true, tags: ["tlp:clear", "tlp:green"], last: 30d}}
            ca_file: {key_file}
            refresh: 5m
          - name: known-good
            role: allow
            url: file:///usr/share/misp-warninglists/lists/cloudflare/list.json
            format: misp-warninglist
            signature: none
          - name: cti
            source: taxii
            url: https://taxii.example.org/api1/collections/91a7b528/
            auth_file: {key_file}
          - name: circl
            source: misp-feed
            url: https://www.circl.lu/doc/misp/feed-osint/
    """))
    misp, allow, taxii, feed = config.feeds
    assert (misp.source, misp.auth_file, misp.signature, misp.refresh) == (
        "misp", str(key_file), "none", 300)
    assert misp.filters == MispFilters(to_ids=True, published=True,
                                       tags=("tlp:clear", "tlp:green"), last=30 * 86400)
    assert (allow.role, allow.format, allow.source) == ("allow", "misp-warninglist", "signed")
    assert (taxii.source, feed.source, feed.auth_file) == ("taxii", "misp-feed", None)
    assert config.feeds[0].role == "block"
    assert "Zq3vY8xK1m" not in repr(config)  # only the path is kept


def test_a_credential_readable_by_others_or_not_roots_is_refused(
    key_file: Path, write_config: Callable[..., Path], cli: Cli,
) -> None:
    feed = {"name": "m", "source": "misp", "url": "https://misp.example.org",
            "auth_file": str(key_file)}
    write_config(feed)
    assert cli("check-config").code == 0
    key_file.chmod(0o640)
    result = cli("check-config")
    assert result.code == 2
    assert "mode 0640" in result.err and f"chmod 600 {key_file}" in result.err
    key_file.chmod(0o600)
    os.chown(key_file, 65534, 65534)
    result = cli("check-config")
    assert result.code == 2 and "owned by uid 65534, not by root" in result.err
    assert "Zq3vY8xK1m" not in result.err


@pytest.mark.parametrize(("extra", "problem"), [
    ("url: http://misp.example.org", "unsigned feeds require https"),
    ("url: file:///srv/misp", "a misp source must be fetched over https"),
    (f"trusted_keys: [{KEY}]", "trusted_keys: not used with source: misp"),
    ("signature: minisign", "signature: source: misp is not signed"),
    ("format: plain", "format: not used with source: misp"),
    ("mirrors: [https://b.example.org]", "mirrors: not used with source: misp"),
    ("filters: {limit: 0}", "filters.limit: must be from 1 to 100000"),
    ("filters: {tag: [x]}", "filters.tag: unknown key"),
    ("role: deny", "role: not one of block, allow"),
])
def test_misp_source_problems(key_file: Path, extra: str, problem: str) -> None:
    lines = ["feeds:", "  - name: m", "    source: misp", f"    auth_file: {key_file}"]
    if not extra.startswith("url:"):
        lines.append("    url: https://misp.example.org")
    problems = problems_of("\n".join([*lines, f"    {extra}"]) + "\n")
    assert any(problem in p for p in problems), problems


def test_other_sources_problems(key_file: Path) -> None:
    problems = problems_of(y(f"""
        feeds:
          - name: t
            source: taxii
            url: https://taxii.example.org/c/
          - name: s
            url: https://feeds.example.org/cert/manifest.json
            trusted_keys: [{KEY}]
            auth_file: {key_file}
            filters: {{to_ids: true}}
          - name: x
            source: rss
            url: https://feeds.example.org/x
    """))
    text = "\n".join(problems)
    assert "feeds[0].auth_file: missing" in text
    assert "feeds[1].auth_file: auth_file is for misp, misp-feed and taxii sources" in text
    assert "feeds[1].filters: filters are for 'source: misp' only" in text
    assert "feeds[2].source: not one of signed, misp, misp-feed, taxii" in text
