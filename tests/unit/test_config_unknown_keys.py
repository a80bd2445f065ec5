"""Duplicate and unknown keys: a typo or a second `signature:` must be an error, never a
silent change of protection."""

from __future__ import annotations

import pytest

from tests.config_helpers import feed_yaml, line_of, problems_of


def test_duplicate_top_level_key() -> None:
    text = "state_dir: /a\nlocal_dir: /b\nstate_dir: /c\n"
    assert problems_of(text, "agent.yaml") == [
        "agent.yaml:3: state_dir: duplicate key (also on line 1) — YAML silently keeps only the "
        "last one; remove one of the two"
    ]


def test_duplicate_key_inside_a_feed() -> None:
    """The dangerous case: the second `signature:` would silently win."""
    text = feed_yaml(signature="minisign") + "    signature: none\n"
    expected = (
        f"<string>:{line_of(text, 'signature: none')}: feeds[0].signature: duplicate key "
        f"(also on line {line_of(text, 'signature: minisign')})"
    )
    assert any(problem.startswith(expected) for problem in problems_of(text))


def test_duplicate_peer_name() -> None:
    text = "isolation:\n  peers:\n    a: [192.0.2.0/24]\n    a: [198.51.100.0/24]\n"
    assert problems_of(text)[0].startswith(
        "<string>:4: isolation.peers.a: duplicate key (also on line 3)"
    )


def test_unknown_key_with_suggestion() -> None:
    text = feed_yaml().replace("trusted_keys:", "trusted_key:")
    problems = problems_of(text)
    assert (
        f"<string>:{line_of(text, 'trusted_key:')}: feeds[0].trusted_key: "
        "unknown key — did you mean 'trusted_keys'?"
    ) in problems
    # ... and the feed then has no key, which is reported too, at the feed's first line
    assert any(
        p.startswith(
            f"<string>:{line_of(text, '- name:')}: feeds[0].trusted_keys: a signed "
            "feed needs at least one key"
        )
        for p in problems
    )
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ("gaurds:\n  max_change: 0.5\n", "gaurds", "did you mean 'guards'?"),
        ("guards:\n  min_prefix4: 8\n", "guards.min_prefix4", "did you mean 'min_prefix_v4'?"),
        (
            "firewall:\n  lan_interface: [lan0]\n",
            "firewall.lan_interface",
            "did you mean 'lan_interfaces'?",
        ),
        ("dns:\n  zone_file: /x\n", "dns.zone_file", "did you mean 'zonefile'?"),
        ("isolation:\n  alow: []\n", "isolation.alow", "did you mean 'allow'?"),
    ],
)
def test_unknown_keys_at_every_level(text: str, path: str, suggestion: str) -> None:
    assert problems_of(text) == [
        f"<string>:{line_of(text, path.split('.')[-1])}: {path}: unknown key — {suggestion}"
    ]


def test_unknown_key_without_close_match_lists_the_known_ones() -> None:
    (problem,) = problems_of("dns:\n  colour: blue\n")
    assert problem.startswith("<string>:2: dns.colour: unknown key — known keys here: backend, ")


def test_line_is_not_a_config_key() -> None:
    """FeedConfig.line is filled by the loader, never written by the operator."""
    (problem,) = problems_of(feed_yaml(line="3"))
    assert "feeds[0].line: unknown key" in problem
