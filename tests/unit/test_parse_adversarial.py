"""Linear-time parsing (issue 13): bench/parse_adversarial.py's hostile megabyte per parser in
under a second each, and doubling the input no more than about doubles the time."""

from __future__ import annotations

import contextlib
import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

from agent.errors import FormatError
from agent.formats import parse

BENCH = Path(__file__).resolve().parents[2] / "bench" / "parse_adversarial.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("parse_adversarial", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_parser_reads_a_hostile_megabyte_in_under_a_second() -> None:
    report = bench().measure(1_000_000, 1)
    assert report["ok"], report["failures"]
    parsers = report["parsers"]
    assert isinstance(parsers, dict)
    assert set(parsers) >= {"plain", "hosts", "spamhaus-drop", "spamhaus-json", "feodo-csv",
                            "threatfox-csv", "urlhaus-csv", "misp-csv", "misp-json", "stix2",
                            "rpz", "misp-attributes", "misp-warninglist", "auto", "manifest"}


def best(data: bytes, fmt: str) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with contextlib.suppress(FormatError):
            parse(data, fmt)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize(
    ("fmt", "head", "unit", "tail"),
    [
        ("rpz", 'x TXT "', '\\"', ""),  # the quadratic case of the audit: 40k took 24 s
        ("rpz", "x TXT ", '"a" ', ""),
        ("stix2", '{"type": "bundle", "objects": [{"type": "indicator", '
         '"pattern": "[url:value = \'', "\\\\'", '"}]}'),
        ("plain", "", "a#;", ""),
        ("feodo-csv", '# "dst_ip","c2_status"\n"', '""', '"'),
    ],
)
def test_time_grows_linearly(fmt: str, head: str, unit: str, tail: str) -> None:
    small = (head + unit * 20_000 + tail).encode()
    large = (head + unit * 80_000 + tail).encode()
    t_small, t_large = best(small, fmt), best(large, fmt)
    # 4x the input: linear is ~4x; quadratic would be ~16x. Slack for a busy machine and tiny
    # absolute times.
    assert t_large < 8 * t_small + 0.05, (t_small, t_large)
