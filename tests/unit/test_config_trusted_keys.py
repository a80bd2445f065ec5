"""Trusted keys given as key files: relative to the configuration, read once at load time,
and refused with a reason when the file is missing, secret or holds no key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load, loads
from tests.config_helpers import (
    KEY,
    KEY2,
    PUBLISHER_KEY,
    PUBLISHER_PUB,
    feed_yaml,
    line_of,
    problems_of,
)


def test_trusted_key_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cert.pub").write_text(PUBLISHER_PUB.read_text())
    path = tmp_path / "agent.yaml"
    path.write_text(feed_yaml().replace(f"[{KEY}]", f"[keys/cert.pub, {KEY}]"))
    feed = load(path).feeds[0]
    assert feed.trusted_keys == (PUBLISHER_KEY, KEY)  # the key lines, in the order given


def test_trusted_key_file_absolute_path() -> None:
    text = feed_yaml().replace(f"[{KEY}]", f"[{PUBLISHER_PUB}]")
    assert loads(text).feeds[0].trusted_keys == (PUBLISHER_KEY,)


def test_trusted_key_file_with_only_the_key_line(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text(f"\n{KEY2}\n")
    text = feed_yaml().replace(f"[{KEY}]", "[k.pub]")
    assert loads(text, str(tmp_path / "agent.yaml")).feeds[0].trusted_keys == (KEY2,)


def test_missing_trusted_key_file(tmp_path: Path) -> None:
    text = feed_yaml().replace(f"[{KEY}]", "[keys/gone.pub]")
    (problem,) = problems_of(text, str(tmp_path / "agent.yaml"))
    assert problem.startswith(
        f"{tmp_path}/agent.yaml:{line_of(text, 'trusted_keys')}: feeds[0].trusted_keys[0]: "
        f"neither a minisign public key nor an existing key file ('{tmp_path}/keys/gone.pub')"
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "untrusted comment: minisign encrypted secret key\nRWRTY0Iy" + "A" * 200 + "\n",
            "this is a minisign secret key",
        ),
        ("untrusted comment: minisign public key 1234\n", "the key file holds no key"),
        (
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",
            "the key file does not hold a minisign public key (not valid base64)",
        ),
    ],
)
def test_bad_trusted_key_file(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "k.pub").write_text(content)
    text = feed_yaml().replace(f"[{KEY}]", "[k.pub]")
    (problem,) = problems_of(text, str(tmp_path / "agent.yaml"))
    assert "feeds[0].trusted_keys[0]: " + words in problem


def test_trusted_key_file_whose_name_looks_like_base64(tmp_path: Path) -> None:
    name = "PublisherKeyRotatedInTwentyTwentySixSpring"
    (tmp_path / name).write_text(PUBLISHER_PUB.read_text())
    text = feed_yaml().replace(f"[{KEY}]", f"[{name}]")
    assert loads(text, str(tmp_path / "agent.yaml")).feeds[0].trusted_keys == (PUBLISHER_KEY,)


def test_trusted_key_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (problem,) = problems_of(
        feed_yaml().replace(f"[{KEY}]", "[keys]"), str(tmp_path / "agent.yaml")
    )
    assert "feeds[0].trusted_keys[0]: cannot read the key file" in problem
