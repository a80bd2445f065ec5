"""The plain bulk path against the normalizer alone (docs/design.md §3).

One command, JSON out: `parse()` of a plain feed of N lines (half IPv4 addresses, half names)
and, interleaved in the same process, the bare loop every parser shares (`try_normalize` over
the same lines, already split, with the collector paused as parse() pauses it). Their ratio is
what decoding, splitting and comment handling cost on top of the normalizer; a per-line regex or
a garbage-collector storm would show as several times the loop.

    .venv/bin/python bench/parse_plain.py [--lines N] [--rounds R]

Target: ratio < 1.5 (best of R each). Exit status 1 when it is missed. This was a unit test
until CI's busy machine put one round's loop at 0.18 s and every other at 0.27-0.33 s: a ratio
of timings belongs here, where it is read, not in a test that fails on a noisy neighbour.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.formats import parse
from agent.indicators import Indicator, Reject, try_normalize
from agent.util.gcpause import collector_paused

TARGET_RATIO = 1.5


def feed(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for n in range(count):
        if n % 2:
            lines.append(f"host{n}-{rng.randint(0, 999)}.example{rng.randint(0, 99)}.com")
        else:
            lines.append(".".join(str(rng.randint(1, 223)) for _ in range(4)))
    return lines


def bare_loop(lines: list[str]) -> int:
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    with collector_paused():
        for number, line in enumerate(lines, 1):
            try_normalize(line, str(number), indicators, rejects)
    return len(indicators)


def measure(count: int, rounds: int) -> dict[str, object]:
    lines = feed(count)
    data = ("\n".join(lines) + "\n").encode()
    parse_times, loop_times = [], []
    parsed = looped = 0
    for _ in range(rounds):  # interleaved, so that a busy spell hits both sides alike
        start = time.perf_counter()
        parsed = len(parse(data).indicators)
        parse_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        looped = bare_loop(lines)
        loop_times.append(time.perf_counter() - start)
    ratio = min(parse_times) / min(loop_times)
    return {
        "lines": count,
        "rounds": rounds,
        "indicators": parsed,
        "same_indicators": parsed == looped,
        "parse_s": [round(t, 4) for t in parse_times],
        "bare_normalize_s": [round(t, 4) for t in loop_times],
        "parse_best_s": round(min(parse_times), 4),
        "bare_normalize_best_s": round(min(loop_times), 4),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "ok": ratio < TARGET_RATIO and parsed == looped,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    report = measure(args.lines, args.rounds)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
