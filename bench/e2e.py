"""Benchmark: whole `blocklist-agent sync` processes as an operator runs them (issue 14).

    python3 bench/e2e.py [--runs 3] [--scenarios five,one] [--scale 1.0] [--no-daemon]

Runs as root inside a network namespace it creates and deletes for each run (never the host's).
Two scenarios of 1,000,000 entries (scaled by --scale), signed with `publish`, served file://:

- five: five feeds of 200k (150k IPv4, 2k /24 prefixes, 48k names each);
- one: one feed of 1M in the same proportions.

firewall nftables, dns none. For each scenario and run: plain `nft -f` of the same addresses
and prefixes (the least any tool must load; before and after the steps, the faster counts), then
three `sync` processes, each from a fresh interpreter as cron or a shell would start it:

- full: the first sync from an empty state directory;
- update: one feed re-published with 1 % of the whole replaced (10k addresses out, 10k in);
- nochange: every feed the same serial;

then the daemon (`blocklist-agent run`) on the same state: its start-up sync, its first
refresh, then a refresh after one more 1 % update (its duration, as the daemon reports it in
status.json: no process start); its resident memory is read once it is idle.
Peak RSS of each sync is the agent process itself (its children, nft, apart); CPU seconds
(the agent's own and nft's) are printed too, since wall time on a shared machine also counts
the other tenants. Prints JSON: the
per-run figures, then min and median over the runs, with the ratios to plain nft. Targets (issue
14): full <= 1.5x plain nft; update <= 1.0 s and <= 0.25x plain nft; nochange <= 0.5 s; peak
RSS <= 400 MiB; idle daemon <= 150 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from deployed import deployed_env  # noqa: E402
from nft_apply import FIRST, baseline_script  # noqa: E402

from agent.publish import minisign, publish  # noqa: E402
from agent.render.common import hash_room  # noqa: E402

TLDS = ["com", "net", "org", "ru", "xyz", "top", "info", "cn", "io", "biz"]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
# The agent in this very process reports its own peak RSS and its children's (nft) at exit.
# VmHWM, not ru_maxrss: the latter keeps the size of the process that forked it (this bench,
# which holds the million generated lines) across the exec.
RUNNER = ("import atexit, resource, runpy, sys\n"
          "def _rss():\n"
          "    own = resource.getrusage(resource.RUSAGE_SELF)\n"
          "    kids = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
          "    hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
          "    print('e2e-rusage', hwm[0], kids.ru_maxrss, own.ru_utime + own.ru_stime,\n"
          "          kids.ru_utime + kids.ru_stime, file=sys.stderr, flush=True)\n"
          "atexit.register(_rss)\n"
          "sys.argv = ['blocklist-agent', *sys.argv[1:]]\n"
          "import os\n"
          "if os.environ.get('E2E_PROFILE'):\n"
          "    import cProfile\n"
          "    prof = cProfile.Profile()\n"
          "    atexit.register(lambda: prof.dump_stats(os.environ['E2E_PROFILE']))\n"
          "    prof.enable()\n"
          "runpy.run_module('agent', run_name='__main__', alter_sys=True)\n")
TARGETS = {"full_ratio": 1.5, "update_s": 1.0, "update_ratio": 0.25, "nochange_s": 0.5,
           "peak_rss_mib": 400, "daemon_idle_rss_mib": 150}


@dataclass
class Feed:
    """One feed's content as lists of lines, and its publishing state."""

    name: str
    v4: list[str]
    nets: list[str]
    names: list[str]
    serial: int = 0
    extra: list[str] = field(default_factory=list)  # addresses added by updates

    def lines(self) -> list[str]:
        return [*self.v4, *self.nets, *self.names]


def make_feed(name: str, seed: int, total: int) -> Feed:
    """75 % IPv4 addresses, 1 % /24 prefixes, 24 % names, like the issue's scenario."""
    rnd = random.Random(seed)
    n_v4, n_nets = total * 75 // 100, total // 100
    n_names = total - n_v4 - n_nets
    v4: set[str] = set()
    while len(v4) < n_v4:
        v4.add(f"{rnd.choice(FIRST)}.{rnd.randrange(256)}.{rnd.randrange(256)}."
               f"{rnd.randrange(1, 255)}")
    nets: set[str] = set()
    while len(nets) < n_nets:
        nets.add(f"{rnd.choice(FIRST)}.{rnd.randrange(256)}.{rnd.randrange(256)}.0/24")
    names: set[str] = set()
    while len(names) < n_names:
        label = "".join(rnd.choice(LETTERS) for _ in range(rnd.randrange(6, 16)))
        names.add(f"{label}.{rnd.choice(TLDS)}")
    return Feed(name, sorted(v4), sorted(nets), sorted(names))


def change(feed: Feed, count: int, seed: int) -> None:
    """Replace `count` of the feed's addresses with new ones (count out, count in)."""
    rnd = random.Random(seed)
    out = set(rnd.sample(range(len(feed.v4)), count))
    kept = [a for i, a in enumerate(feed.v4) if i not in out]
    present = set(kept)
    new: set[str] = set()
    while len(new) < count:
        a = (f"{rnd.choice(FIRST)}.{rnd.randrange(256)}.{rnd.randrange(256)}."
             f"{rnd.randrange(1, 255)}")
        if a not in present:
            new.add(a)
    feed.v4 = sorted([*kept, *new])


class Bench:
    def __init__(self, work: Path, feeds: list[Feed]) -> None:
        self.work = work
        self.feeds = feeds
        _, self.key = minisign.generate_keypair()
        self.ns = ""
        self.nft = ["nft"]
        self.profile: Path | None = None
        self.env = deployed_env(work / "pycache")  # from byte code, as installed

    def publish(self, feed: Feed) -> None:
        feed.serial += 1
        src = self.work / "src" / feed.name / "indicators.txt"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text("\n".join(feed.lines()) + "\n")
        publish([src], out_dir=self.work / "feeds" / feed.name, key=self.key, publisher="bench",
                serial=feed.serial, expires=timedelta(days=1), formats={"indicators.txt": "plain"},
                now=datetime.now(UTC) - timedelta(minutes=1))

    def config(self, state: Path) -> Path:
        path = self.work / "agent.yaml"
        lines = [f"state_dir: {state}", f"local_dir: {self.work / 'local.d'}", "feeds:"]
        for feed in self.feeds:
            lines += [f"  - name: {feed.name}",
                      f"    url: {(self.work / 'feeds' / feed.name / 'manifest.json').as_uri()}",
                      f"    trusted_keys: [\"{self.key.public_key.to_text()}\"]",
                      "    max_size: 1GiB"]
        lines += ["firewall:", "  backend: nftables", "  management: [10.10.99.0/24]",
                  "  wan_interfaces: [wan0]",
                  "dns:", "  backend: none", ""]
        path.write_text("\n".join(lines))
        return path

    def in_ns(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def plain_nft(self, sized: bool = False) -> tuple[float, float]:
        """`nft -f` of the same addresses and prefixes into a bare table, then dropped; `sized`:
        the hash set declared with the size the agent gives it."""
        v4 = {a for f in self.feeds for a in f.v4}
        nets = {n for f in self.feeds for n in f.nets}
        script = self.work / "baseline.nft"
        script.write_text(baseline_script(v4, nets, hash_room(len(v4)) if sized else 0))
        before = _children_cpu()
        started = time.perf_counter()
        subprocess.run(self.in_ns("nft", "-f", str(script)), check=True)
        elapsed = time.perf_counter() - started
        cpu = _children_cpu() - before
        subprocess.run(self.in_ns("nft", "delete", "table", "inet", "baseline"), check=True)
        return elapsed, cpu

    def sync(self, config: Path, step: str = "") -> dict[str, Any]:
        """One `sync --json` process in the namespace: wall time, peak RSS, what it did."""
        cmd = self.in_ns(sys.executable, "-c", RUNNER, "-c", str(config), "sync", "--json")
        env = dict(self.env)
        if self.profile is not None:  # cProfile of each step (its figures then mean little)
            env["E2E_PROFILE"] = str(self.profile / f"{self.ns}-{step}.prof")
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env)
        elapsed = time.perf_counter() - started
        own = 0
        cpu = kids_cpu = 0.0
        for line in proc.stderr.splitlines():
            if line.startswith("e2e-rusage "):
                fields = line.split()[1:]
                own = int(fields[0])  # fields[1], the children's, counts a fork's copy
                cpu, kids_cpu = float(fields[2]), float(fields[3])
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            sys.exit(f"sync failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        if report["result"] != "ok" or not report["applied"]:
            sys.exit(f"sync did not apply: {json.dumps(report)[:2000]}\n{proc.stderr}")
        return {"s": round(elapsed, 3), "cpu_s": round(cpu, 3), "nft_cpu_s": round(kids_cpu, 3),
                "peak_rss_mib": round(own / 1024, 1),
                "stages_s": report["timings"], "notes": report["applied_notes"],
                "plan": {k: report["plan"][k] for k in ("added", "removed")}}

    def daemon(self, config: Path, state: Path) -> dict[str, Any]:
        """`run` on the same state: start-up sync, first refresh, a 1 % update by SIGHUP; then
        its resident memory once idle."""
        status = state / "status.json"
        log = (self.work / "daemon.log").open("w")
        proc = subprocess.Popen(self.in_ns(sys.executable, "-c", RUNNER, "-c", str(config),
                                           "run"), stdout=log, stderr=log, cwd=str(ROOT),
                                env=self.env)
        try:
            mark = _mtime(status)
            for _ in range(2):  # the start-up sync, then the refresh of every feed
                mark = _wait_change(status, mark, proc)
            change(self.feeds[0], self._one_percent(), seed=99)
            self.publish(self.feeds[0])
            os.kill(proc.pid, signal.SIGHUP)
            _wait_change(status, mark, proc)
            time.sleep(3.0)
            mem = _proc_status(proc.pid)
            last = json.loads(status.read_text())["last_sync"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
        if last["result"] != "ok":
            sys.exit(f"the daemon's last sync was {last['result']}: {json.dumps(last)[:2000]}")
        return {"idle_rss_mib": round(mem["VmRSS"] / 1024, 1),
                "peak_rss_mib": round(mem["VmHWM"] / 1024, 1),
                "update_s": last.get("duration")}  # the 1 % update inside the daemon

    def _one_percent(self) -> int:
        return sum(len(f.lines()) for f in self.feeds) // 100

    def run(self, with_daemon: bool) -> dict[str, Any]:
        self.ns = f"bench-e2e-{uuid.uuid4().hex[:6]}"
        state = Path(tempfile.mkdtemp(prefix="state-", dir=self.work))
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        try:
            config = self.config(state)
            plain = [self.plain_nft()]
            out: dict[str, Any] = {"full": self.sync(config, "full")}
            change(self.feeds[0], self._one_percent(), seed=7)
            self.publish(self.feeds[0])
            out["update"] = self.sync(config, "update")
            out["nochange"] = self.sync(config, "nochange")
            if with_daemon:
                out["daemon"] = self.daemon(config, state)
            plain.append(self.plain_nft())
            sized = [self.plain_nft(sized=True) for _ in range(2)]
        finally:
            subprocess.run(["ip", "netns", "del", self.ns], check=True)
        out["plain_nft_s"] = round(min(s for s, _ in plain), 3)
        out["plain_nft_cpu_s"] = round(min(c for _, c in plain), 3)
        base = out["plain_nft_s"]
        out["full_ratio"] = round(out["full"]["s"] / base, 2)
        out["update_ratio"] = round(out["update"]["s"] / base, 2)
        out["nochange_ratio"] = round(out["nochange"]["s"] / base, 2)
        # the agent declares its hash sets with a size (agent.render.common.hash_room), which
        # spares the kernel growing the hash: the same load by plain nft, for comparison
        out["plain_nft_sized_s"] = round(min(s for s, _ in sized), 3)
        out["full_ratio_to_sized"] = round(out["full"]["s"] / out["plain_nft_sized_s"], 2)
        return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _wait_change(path: Path, mark: int, proc: subprocess.Popen[bytes], timeout: float = 300
                 ) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the daemon exited ({proc.returncode}); see its log")
        now = _mtime(path)
        if now != mark:
            return now
        time.sleep(0.05)
    sys.exit(f"the daemon wrote no {path.name} within {timeout:.0f} s")


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as "a.b" keys (timings per stage excluded: too many to summarise)."""
    out: dict[str, float] = {}
    for key, value in doc.items():
        if key == "stages_s":
            continue
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    flats = [_flat(r) for r in runs]
    keys = [k for k in flats[0] if all(k in f for f in flats)]
    out: dict[str, Any] = {"min": {k: min(f[k] for f in flats) for k in keys},
           "median": {k: statistics.median(f[k] for f in flats) for k in keys}}
    med = out["median"]
    checks = {
        "full_ratio": med["full_ratio"] <= TARGETS["full_ratio"],
        "update_s": med["update.s"] <= TARGETS["update_s"],
        "update_ratio": med["update_ratio"] <= TARGETS["update_ratio"],
        "nochange_s": med["nochange.s"] <= TARGETS["nochange_s"],
        "peak_rss_mib": max(med[f"{s}.peak_rss_mib"] for s in ("full", "update", "nochange"))
        <= TARGETS["peak_rss_mib"],
    }
    if "daemon.idle_rss_mib" in med:
        checks["daemon_idle_rss_mib"] = med["daemon.idle_rss_mib"] <= TARGETS[
            "daemon_idle_rss_mib"]
    out["pass"] = checks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--scenarios", default="five,one")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--no-daemon", action="store_true")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: a temp dir)")
    parser.add_argument("--profile", type=Path,
                        help="write a cProfile of each sync step into this directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/e2e.py needs root: it creates a network namespace for nft")
    # a SIGTERM (timeout, Ctrl-C of a wrapper) unwinds through the `finally` that deletes the
    # run's namespace, instead of leaving it behind
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    total = int(1_000_000 * args.scale)
    result: dict[str, Any] = {"benchmark": "end-to-end sync processes", "entries": total,
                              "runs": args.runs, "targets": TARGETS, "scenarios": {}}
    for scenario in args.scenarios.split(","):
        count = {"five": 5, "one": 1}[scenario]
        work = args.keep / scenario if args.keep else Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        work.mkdir(parents=True, exist_ok=True)
        runs = []
        for run in range(args.runs):
            feeds = [make_feed(f"feed{i}", seed=100 * run + i, total=total // count)
                     for i in range(count)]
            bench = Bench(work / f"run{run}", feeds)
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                bench.profile = args.profile.resolve()
            for feed in feeds:
                bench.publish(feed)
            runs.append(bench.run(with_daemon=not args.no_daemon))
            print(f"{scenario} run {run + 1}/{args.runs}: "
                  f"{json.dumps({k: v for k, v in _flat(runs[-1]).items()})}",
                  file=sys.stderr, flush=True)
        result["scenarios"][scenario] = {"feeds": count, "runs": runs, **summary(runs)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
