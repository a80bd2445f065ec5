"""`make demo` is part of the test suite, so the demo and the tests share one lab and cannot
drift apart: the narrated story must pass end to end and leave the host as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_demo_passes_and_leaves_nothing_behind() -> None:
    proc = subprocess.run([sys.executable, "-m", "lab.demo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    assert "FAIL:" not in out
    for step in ("1. Before the feed", "2. The CERT publishes", "3. A tampered feed",
                 "4. Isolation drill", "5. Teardown"):
        assert step in out
    assert "PASS: host nft ruleset unchanged" in out
    assert out.rstrip().endswith(" 0 failed")
