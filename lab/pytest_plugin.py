"""pytest fixtures for the namespace lab. Enable in a test file with

    pytest_plugins = ["lab.pytest_plugin"]

`lab` is **module-scoped**: one lab per test file. Bring-up costs about 0.3 s, so sharing it
within a file keeps suites fast, while a fresh lab per file means a file that leaves nft tables,
servers or an isolation behind can never change the results of another file. Inside a file,
tests that change the lab must undo what they did (delete their nft table, stop their servers),
or use `lab_factory` (function-scoped) for a lab of their own.

Without root the fixtures skip (shown in the `-ra` summary); CI and the dev container run as root.
Tests using them are marked `lab` (and `root`) by tests/conftest.py, which reads `LAB_FIXTURES`,
so `-m "not lab"` deselects them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.core import Lab

LAB_FIXTURES = ("lab", "lab_factory")


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the network-namespace lab needs root")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A lab that is up for the whole test module and torn down after its last test."""
    _require_root()
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """Build extra labs (`lab_factory(servers=False)`); all are torn down after the test."""
    _require_root()
    made: list[Lab] = []

    def make(prefix: str = "bla", **kwargs: Any) -> Lab:
        new = Lab(prefix, **kwargs)
        made.append(new)
        new.up()
        return new

    yield make
    for each in made:
        each.down()
