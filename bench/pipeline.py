"""Benchmark: `sync --dry-run --render-to` on a signed feed of 1,000,000 indicators.

    python3 bench/pipeline.py [--scale 1.0] [--keep DIR]

Builds a feed (500k IPv4, 50k IPv6, 50k prefixes, 400k names; scaled by --scale), signs it
with `blocklist-agent publish`, then times the real command in a child process and prints JSON:
wall time, the per-stage timings the command reports, its peak RSS, and a raw baseline measured
in the same run (read + sha256 + split the payload into a set: the least any tool must do) so
the ratio says what verification, validation, merging and rendering cost on top.
Targets (issue 2): <= 15 s and <= 1.5 GB peak RSS on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_OCTETS = [o for o in range(1, 224)
                if o not in (10, 100, 127, 169, 172, 192, 198, 203)]
TLDS = ["com", "net", "org", "ru", "xyz", "top", "info", "cn", "io", "biz"]


def make_payload(path: Path, scale: float, seed: int = 42) -> dict[str, int]:
    rnd = random.Random(seed)
    counts = {"ipv4": int(500_000 * scale), "ipv6": int(50_000 * scale),
              "prefixes": int(50_000 * scale), "domains": int(400_000 * scale)}
    lines = ["# benchmark feed"]
    for _ in range(counts["ipv4"]):
        lines.append(f"{rnd.choice(FIRST_OCTETS)}.{rnd.randrange(256)}.{rnd.randrange(256)}."
                     f"{rnd.randrange(1, 255)}")
    for _ in range(counts["ipv6"]):
        lines.append(f"2a0{rnd.randrange(10)}:{rnd.randrange(65536):x}:{rnd.randrange(65536):x}"
                     f"::{rnd.randrange(1, 65536):x}")
    for i in range(counts["prefixes"]):
        if i % 10:
            lines.append(f"{rnd.choice(FIRST_OCTETS)}.{rnd.randrange(256)}."
                         f"{rnd.randrange(256)}.0/24")
        else:
            lines.append(f"2a0{rnd.randrange(10)}:{rnd.randrange(65536):x}::/32")
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(counts["domains"]):
        label = "".join(rnd.choice(letters) for _ in range(rnd.randrange(6, 16)))
        name = f"{label}.{rnd.choice(TLDS)}"
        if i % 3 == 0:
            name = f"www.{name}"
        lines.append(f"*.{name}" if i % 10 == 0 else name)
    path.write_text("\n".join(lines) + "\n")
    return counts


def run(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return elapsed, proc.stdout


def baseline(payload: Path) -> float:
    started = time.perf_counter()
    data = payload.read_bytes()
    hashlib.sha256(data).hexdigest()
    values = set(data.decode().split("\n"))
    assert values
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="keep the work directory here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    agent = [sys.executable, "-m", "agent"]
    payload = work / "indicators.txt"
    counts = make_payload(payload, args.scale)
    if not (work / "bench.key").exists():
        subprocess.run([*agent, "keygen", "--out", str(work / "bench")], check=True,
                       capture_output=True)
    subprocess.run([*agent, "publish", "--serial", str(time.time_ns()),
                    "--key", str(work / "bench.key"), "--out", str(work / "feed"),
                    "--format", "plain", "--publisher", "bench", str(payload)],
                   check=True, capture_output=True)
    pub = (work / "bench.pub").read_text().splitlines()[-1]
    (work / "agent.yaml").write_text(
        "state_dir: state\nlocal_dir: local.d\n"
        "feeds:\n  - name: bench\n"
        f"    url: {(work / 'feed' / 'manifest.json').as_uri()}\n"
        f"    trusted_keys: [\"{pub}\"]\n"
        "firewall:\n  backend: none\ndns:\n  backend: none\n"
    )
    base = min(baseline(payload) for _ in range(2))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    elapsed, stdout = run([*agent, "-c", str(work / "agent.yaml"), "sync", "--dry-run",
                           "--render-to", str(work / "out"), "--json"])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(stdout)
    result = {
        "benchmark": "pipeline sync --dry-run --render-to",
        "indicators": counts, "payload_bytes": payload.stat().st_size,
        "wall_s": round(elapsed, 2),
        "stages_s": report["timings"],
        "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
        "baseline_read_hash_split_s": round(base, 3),
        "ratio_vs_baseline": round(elapsed / base, 1),
        "enforced": report["enforced"],
        "accepted": report["feeds"][0]["accepted"],
        "rendered_bytes": {name: Path(p).stat().st_size
                           for name, p in report["rendered"].items()},
        "targets": {"wall_s": 15, "peak_rss_mib": 1536},
    }
    result["pass"] = result["wall_s"] <= 15 and result["peak_rss_mib"] <= 1536
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
