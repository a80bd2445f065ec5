"""What the configuration tests share: sample keys, the annotated example, and an oracle for
line numbers that searches the test's own YAML text (independent of the loader's node walk)."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from agent.config import ConfigProblems, loads

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "agent.yaml"
DATA = Path(__file__).resolve().parent / "data" / "config"
PUBLISHER_PUB = DATA / "publisher.pub"
PUBLISHER_KEY = "RWQEwzY9T/UGHX/gsW+Xha545MdsL4wxgOZNBj4JyeoUtwb/FtuGbrKk"
KEY = "RWSRFnNZD/Ff7i9l9xrfUW/N9p4syHC7ztZEauUZHkjVMnlnkvDI6sF6"
KEY2 = base64.b64encode(b"Ed" + bytes(range(40))).decode()


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, marker: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `marker`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) >= nth, f"marker {marker!r} not in test text"
    return hits[nth - 1]


def problems_of(text: str, path: str = "<string>") -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        loads(text, path)
    assert info.value.problems, "a ConfigProblems without problems"
    return info.value.problems


def feed_yaml(**extra: str) -> str:
    lines = [
        "feeds:",
        "  - name: cert",
        "    url: https://feeds.example.org/cert/manifest.json",
        f"    trusted_keys: [{KEY}]",
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"
