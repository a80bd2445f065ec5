"""YAML syntax errors: the line, PyYAML's wording and advice on what to fix."""

from __future__ import annotations

import pytest

from tests.config_helpers import problems_of


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("state_dir: /a\nfeeds:\n\t- name: x\n", 3, "use spaces"),
        ("guards:\n  protected: [10.0.0.0/8\nfirewall: {}\n", 3, "not valid YAML"),
        ("state_dir: /a\n---\nstate_dir: /b\n", 2, "one YAML document"),
        ("feeds: *nothing\n", 1, "anchor"),
        ("state_dir: /a\nlocal_dir: \x07\n", 2, "not allowed"),
        ("state_dir: '/a\n", 2, "not valid YAML"),
    ],
)
def test_yaml_syntax_errors_give_the_line(text: str, line: int, words: str) -> None:
    (problem,) = problems_of(text, "agent.yaml")
    assert problem.startswith(f"agent.yaml:{line}: not valid YAML")
    assert words in problem
