"""The plain bulk path stays close to the cost of the normalizer itself (docs/design.md §3)."""

from __future__ import annotations

import gc
import random
import time

import pytest

from agent.formats import parse
from agent.indicators import Indicator, Reject, try_normalize


def feed(count: int) -> list[str]:
    rng = random.Random(7)
    lines = []
    for n in range(count):
        if n % 2:
            lines.append(f"host{n}-{rng.randint(0, 999)}.example{rng.randint(0, 99)}.com")
        else:
            lines.append(".".join(str(rng.randint(1, 223)) for _ in range(4)))
    return lines


@pytest.mark.slow
def test_plain_parse_costs_little_more_than_normalizing_the_values() -> None:
    lines = feed(100_000)
    data = ("\n".join(lines) + "\n").encode()

    def bare_loop() -> None:
        indicators: list[Indicator] = []
        rejects: list[Reject] = []
        gc.disable()  # as parse() does
        try:
            for number, line in enumerate(lines, 1):
                try_normalize(line, str(number), indicators, rejects)
        finally:
            gc.enable()

    parse_times, loop_times = [], []
    for _ in range(5):  # interleaved, best of 5: the machine may be busy with other work
        start = time.perf_counter()
        parsed = parse(data)
        parse_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_loop()
        loop_times.append(time.perf_counter() - start)
    assert len(parsed.indicators) == 100_000
    # The bare loop has no decoding, splitting or comment handling, so parse may cost a little
    # more; a per-line regex or a garbage-collector storm would cost far more than this bound.
    print(f"parse {min(parse_times):.3f}s, bare normalize loop {min(loop_times):.3f}s")
    assert min(parse_times) < 1.5 * min(loop_times)
