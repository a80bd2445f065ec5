"""Benchmark: the DNS backends with 1,000,000 blocked names, then an update changing 1 % of them,
while a LAN client queries the resolver (docs/design.md §7, issue 4).

    python3 bench/dns_apply.py [--names 1000000] [--change 0.01] [--rate 50]
                               [--paths unbound,dnsupdate] [--out FILE]

Runs as root inside the namespace lab it creates and deletes (never the host's network): an
authoritative server for `example.` in ns wan, the resolver in ns gw (its log in /dev/shm, as
syslog would take it on a gateway), the real agent
(`python -m agent sync -v`) in ns gw on a signed feed (file://), a client in ns lan1 sending
`--rate` queries per second (half for a name that must resolve, half for names of the list that
must be NXDOMAIN; 2 s timeout each). For each path:

- unbound: zone file + `unbound-control auth_zone_reload` (Unbound 1.17 in ns gw);
- dnsupdate: RFC 2136 + TSIG to a BIND primary on 127.0.0.1:5300 in ns gw, Unbound following
  it by NOTIFY + IXFR.

Prints JSON: per path and phase (first load, update), the sync's wall time and the backend's note,
seconds from the start of the apply ("applying to ...") until the change is visible to the
client (a name of the list answers NXDOMAIN; for the update, a name only the update adds),
failed queries (timeouts, SERVFAIL, wrong answers; during a first load "blocked name resolved"
is expected: the list is not loaded yet) and peak RSS of the agent and of each DNS server.
Target (issue 4), dnsupdate update: visible <= 5 s, 0 failed queries.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the lab package
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dns.rcode
from deployed import deployed_env

from agent.publish import minisign, publish
from lab import Lab
from lab.resolvers import (
    Server,
    TsigKey,
    addresses,
    example_zone,
    query,
    start_authoritative,
    start_bind_primary,
    start_unbound,
)

ROOT = Path(__file__).resolve().parent.parent
PROBE = "new-evil.example"  # resolves before the update, is blocked by it
GOOD = "good.example"  # must resolve all along
PRIMARY = ("127.0.0.1", 5300)
WRAPPER = ("import resource, subprocess, sys\n"
           "r = subprocess.run(sys.argv[1:])\n"
           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
           "      file=sys.stderr, flush=True)\n"
           "sys.exit(r.returncode)\n")


def tmpfs_dir() -> Path:
    """Unbound's working directory (its log) in RAM, as its syslog logging is on a gateway:
    a log file on a disk that the agent is busy writing to would stall it (measured)."""
    return Path(tempfile.mkdtemp(prefix="bench-unbound-", dir="/dev/shm"))


def peak_rss_mib(server: Server) -> float | None:
    """VmHWM of a server process (ip netns exec execs it: the Popen pid is the server)."""
    try:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@dataclass
class Client:
    """`rate` queries per second from ns lan1; records every failure with its time."""

    lab: Lab
    server: str
    blocked: list[str]
    rate: float
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def one(self, index: int) -> None:
        sent = time.monotonic()
        self.sent.append(sent)
        name = GOOD if index % 2 == 0 else self.blocked[index % len(self.blocked)]
        msg = query(self.lab, "lan1", self.server, name, timeout=2.0)
        if msg is None:
            self.failures.append((sent, name, "timeout"))
        elif msg.rcode() == dns.rcode.SERVFAIL:
            self.failures.append((sent, name, "servfail"))
        elif name == GOOD and self.lab.addr["site"] not in addresses(msg):
            self.failures.append((sent, name, "good name not resolved"))
        elif name != GOOD and msg.rcode() != dns.rcode.NXDOMAIN:
            self.failures.append((sent, name, "blocked name resolved"))

    @contextmanager
    def running(self) -> Iterator[Client]:
        def loop() -> None:
            with ThreadPoolExecutor(max_workers=int(self.rate * 2.5) + 4) as pool:
                index = 0
                start = time.monotonic()
                while not self._stop.is_set():
                    pool.submit(self.one, index)
                    index += 1
                    time.sleep(max(0.0, start + index / self.rate - time.monotonic()))
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def failed_between(self, start: float, end: float, origin: float) -> dict[str, Any]:
        """Failures of the queries sent in [start, end]; `first`/`last`: when the first and
        last of them were sent, in seconds after `origin` (the apply's start)."""
        hits = [(sent, kind) for sent, _, kind in self.failures if start <= sent <= end]
        kinds = [kind for _, kind in hits]
        out: dict[str, Any] = {"queries": sum(1 for t in self.sent if start <= t <= end),
                               "failed": len(hits),
                               **{kind: kinds.count(kind) for kind in sorted(set(kinds))}}
        if hits:
            out["first"] = round(min(t for t, _ in hits) - origin, 2)
            out["last"] = round(max(t for t, _ in hits) - origin, 2)
        return out


class Bench:
    def __init__(self, lab: Lab, work: Path, names: int, change: float) -> None:
        self.lab = lab
        self.work = work
        self.env = deployed_env(work / "pycache")  # from byte code, as installed
        rnd = random.Random(4)
        self.first = [f"n{i:07d}-{rnd.randrange(10**6):06d}.example" for i in range(names)]
        count = max(1, int(names * change))
        removed = set(rnd.sample(self.first, count))
        kept = [n for n in self.first if n not in removed]
        self.second = [*kept, PROBE, *(f"u{i:07d}.example" for i in range(count - 1))]
        self.kept = kept[:: max(1, len(kept) // 500)]  # blocked before and after
        _, self.key = minisign.generate_keypair()
        self.serial = 0

    def publish(self, feed: Path, names: list[str]) -> None:
        self.serial += 1
        payload = feed.parent / "src" / "indicators.txt"
        payload.parent.mkdir(parents=True, exist_ok=True)
        payload.write_text("\n".join(names) + "\n")
        publish([payload], out_dir=feed, key=self.key, publisher="bench", serial=self.serial,
                expires=timedelta(days=1), now=datetime.now(UTC) - timedelta(minutes=1))

    def config(self, root: Path, dns_lines: str) -> Path:
        path = root / "agent.yaml"
        path.write_text(f"""state_dir: state
local_dir: local.d
feeds:
  - name: bench
    url: {(root / "feed" / "manifest.json").as_uri()}
    trusted_keys: ["{self.key.public_key.to_text()}"]
    max_size: 1GiB
guards:
  max_change: 1.0
firewall:
  backend: none
dns:
{dns_lines}""")
        return path

    def sync(self, config: Path, client: Client, resolver: str, probe: str) -> dict[str, Any]:
        """Run `sync -v` in ns gw; time the apply start (its progress line "applying to ...")
        and the moment `probe` is blocked."""
        started = time.monotonic()
        proc = self.lab.spawn("gw", sys.executable, "-c", WRAPPER, sys.executable, "-m",
                              "agent", "-c", str(config), "sync", "-v",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=str(ROOT), env=self.env)
        events: dict[str, float] = {}
        lines: list[str] = []
        out: list[str] = []

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line.rstrip())
                if line.startswith("... applying to "):
                    events.setdefault("apply", time.monotonic())

        def read_stdout() -> None:
            assert proc.stdout is not None
            out.append(proc.stdout.read())
            proc.wait()
            events["end"] = time.monotonic()

        readers = [threading.Thread(target=f, daemon=True) for f in (read_stderr, read_stdout)]
        for reader in readers:
            reader.start()
        visible = None
        while visible is None:
            msg = query(self.lab, "lan1", resolver, probe, timeout=1.0)
            if msg is not None and msg.rcode() == dns.rcode.NXDOMAIN:
                visible = time.monotonic()
            elif "end" in events and time.monotonic() - events["end"] > 30:
                break
            else:
                time.sleep(0.05)
        for reader in readers:
            reader.join()
        notes = [line for line in "".join(out).splitlines()
                 if line.startswith(("dns ", "dnsupdate:"))]
        rss = [int(line.split()[1]) for line in lines if line.startswith("maxrss_kib")]
        apply_at = events.get("apply", started)
        report: dict[str, Any] = {
            "exit": proc.returncode,
            "sync_seconds": round(events["end"] - started, 2),
            "notes": notes,
            "visible_after_apply_start": round(visible - apply_at, 2) if visible else None,
            "visible_after_sync_start": round(visible - started, 2) if visible else None,
            "agent_peak_rss_mib": round(rss[-1] / 1024, 1) if rss else None,
        }
        if proc.returncode != 0:
            report["stderr"] = lines[-10:]
        time.sleep(2.5)  # queries sent just before the end answer (or time out) late
        report["client"] = client.failed_between(started, max(visible or 0, events["end"]) + 1,
                                                 apply_at)
        return report


def run_unbound(bench: Bench, lab: Lab, upstream: Server, rate: float) -> dict[str, Any]:
    root = bench.work / "unbound"
    root.mkdir()
    zonefile = root / "zones" / "rpz.zone"
    address = lab.addr["gw_lan1"]
    with start_unbound(lab, listen=[(address, 53)], upstream=(upstream.address, 53),
                       rpz_zonefile=zonefile, workdir=tmpfs_dir()) as unbound:
        control = " ".join(unbound.control[4:])
        config = bench.config(root, f"  backend: unbound\n  zonefile: {zonefile}\n"
                                    f"  control: {control}\n  resolver: {address}\n  ttl: 60\n")
        bench.publish(root / "feed", bench.first)
        with Client(lab, address, bench.kept, rate).running() as client:
            first = bench.sync(config, client, address, bench.kept[-1])
        bench.publish(root / "feed", bench.second)
        with Client(lab, address, bench.kept, rate).running() as client:
            update = bench.sync(config, client, address, PROBE)
        return {"first_load": first, "update": update,
                "unbound_peak_rss_mib": peak_rss_mib(unbound)}


def run_dnsupdate(bench: Bench, lab: Lab, upstream: Server, rate: float) -> dict[str, Any]:
    root = bench.work / "dnsupdate"
    root.mkdir()
    tsig = TsigKey.generate()
    (root / "tsig.key").write_text(tsig.bind_text())
    address = lab.addr["gw_lan1"]
    with ExitStack() as stack:
        primary = stack.enter_context(start_bind_primary(lab, tsig=tsig, listen=PRIMARY,
                                                         notify=[("127.0.0.1", 53)]))
        unbound = stack.enter_context(start_unbound(
            lab, listen=[(address, 53), ("127.0.0.1", 53)], upstream=(upstream.address, 53),
            rpz_primary=PRIMARY, workdir=tmpfs_dir()))
        config = bench.config(root, f"  backend: dnsupdate\n  server: {PRIMARY[0]}:{PRIMARY[1]}"
                                    f"\n  tsig_key_file: {root / 'tsig.key'}\n"
                                    f"  resolver: {address}\n  ttl: 60\n")
        bench.publish(root / "feed", bench.first)
        with Client(lab, address, bench.kept, rate).running() as client:
            first = bench.sync(config, client, address, bench.kept[-1])
        wait_follower(lab, address, bench.kept[0])
        bench.publish(root / "feed", bench.second)
        with Client(lab, address, bench.kept, rate).running() as client:
            update = bench.sync(config, client, address, PROBE)
        return {"first_load": first, "update": update,
                "unbound_peak_rss_mib": peak_rss_mib(unbound),
                "bind_primary_peak_rss_mib": peak_rss_mib(primary)}


def bench_zone(lab: Lab) -> str:
    """The lab's `example.` plus a wildcard: every generated name resolves until blocked."""
    return example_zone(lab) + f"* A {lab.addr['site']}\n"


def wait_follower(lab: Lab, address: str, name: str, timeout: float = 600) -> None:
    """After the first load, Unbound may still be transferring the zone: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = query(lab, "lan1", address, name, timeout=1.0)
        if msg is not None and msg.rcode() == dns.rcode.NXDOMAIN:
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--paths", default="unbound,dnsupdate")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"names": args.names, "changed": int(args.names * args.change),
                               "rate_qps": args.rate}
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as tmp, Lab(servers=False) as lab, \
            start_authoritative(lab, {"example.": bench_zone(lab)}) as upstream:
        bench = Bench(lab, Path(tmp), args.names, args.change)
        runners = {"unbound": run_unbound, "dnsupdate": run_dnsupdate}
        for path in args.paths.split(","):
            results[path] = runners[path](bench, lab, upstream, args.rate)
            print(f"{path}: {json.dumps(results[path])}", file=sys.stderr, flush=True)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
