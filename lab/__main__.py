"""`python -m lab up | check | cleanup`: the lab by hand, for the demo and for debugging.

  up       build a lab, print its namespaces and addresses, keep it until Ctrl-C (or SIGTERM)
  check    build a lab, check every path the tests rely on, tear it down, print PASS/FAIL lines;
           exit 0 only if all passed (also proves the host network is unchanged afterwards)
  cleanup  delete namespaces left by lab owners that died (SIGKILL); never touches live labs
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

from lab import hostcheck
from lab.core import Lab, cleanup_stale
from lab.topology import ECHO_PORT, HTTP_PORT

Check = tuple[str, Callable[[], bool]]


def _up(prefix: str) -> int:
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored:
    # restore Ctrl-C explicitly so `kill -INT` always tears the lab down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The interrupt can come at any moment, even during bring-up or just after READY: it
    # unwinds the `with`, which tears the lab down, and is only caught out here.
    try:
        with Lab(prefix) as lab:
            print(lab.describe())
            print(f"try: ip netns exec {lab.ns['lan1']} curl http://{lab.addr['site']}/")
            print(f"     ip netns exec {lab.ns['gw']} nft list ruleset")
            stem = lab.ns["gw"].rsplit("-", 1)[0]
            print(f"READY {stem} (Ctrl-C to tear down)", flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    print("lab down", flush=True)
    return 0


def _forward_hook_counts(lab: Lab) -> bool:
    """A packet from lan1 to c2 is counted by a rule on gw's forward hook: the path is via gw."""
    lab.nft("gw", f"""
        table inet lab_check {{
            chain forward {{
                type filter hook forward priority 0; policy accept;
                ip daddr {lab.addr['c2']} counter
            }}
        }}""")
    try:
        lab.tcp_probe("lan1", lab.addr["c2"], HTTP_PORT)
        listing = lab.run("gw", "nft", "list", "table", "inet", "lab_check").stdout
        return "packets 0 " not in listing and "counter packets" in listing
    finally:
        lab.nft("gw", "delete table inet lab_check")


def _checks(lab: Lab) -> list[Check]:
    a = lab.addr

    def http(src: str, dst: str) -> Callable[[], bool]:
        return lambda: lab.http_get(src, a[dst]) == "ok\n"

    def tcp(src: str, dst: str, port: int) -> Callable[[], bool]:
        return lambda: lab.tcp_probe(src, a[dst], port)

    checks: list[Check] = [
        ("gw forwards IPv4 and IPv6", lambda: lab.run(
            "gw", "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"
        ).stdout.split() == ["1", "1"]),
        ("gw interfaces are lan0 lan1 mgmt0 wan0", lambda: {
            line.split()[0].split("@")[0]
            for line in lab.run("gw", "ip", "-br", "link").stdout.splitlines()
        } >= {"lan0", "lan1", "mgmt0", "wan0"}),
    ]
    for src in ("lan1", "lan2", "mgmt"):
        for dst in ("site", "site6"):
            checks.append((f"{src} -> {dst} HTTP (curl)", http(src, dst)))
    for src, dst in (("lan1", "lan2"), ("lan1", "lan26"), ("lan2", "lan1"), ("lan2", "lan16"),
                     ("mgmt", "gw_mgmt"), ("mgmt", "gw_mgmt6"), ("lan1", "mgmt")):
        checks.append((f"{src} -> {dst} TCP", tcp(src, dst, ECHO_PORT)))
    for host in ("c2", "essential", "peer", "feed", "dns", "bad_prefix_host"):
        for name in (host, host + "6"):
            checks.append((f"lan1 -> {name} TCP", tcp("lan1", name, HTTP_PORT)))
    checks += [
        ("lan1 -> any address of the bad prefix (AnyIP)", lambda: lab.tcp_probe(
            "lan1", "192.0.2.200", HTTP_PORT) and lab.tcp_probe("lan1", "2001:db8:bad::beef", 80)),
        ("gw -> site (the gateway's own traffic)", lambda: lab.tcp_probe("gw", a["site"], 80)),
        ("c2 -> lan1 inbound TCP", lambda: lab.tcp_probe(
            "wan", a["lan1"], ECHO_PORT, src_addr=a["c2"])),
        ("held connection lan1 -> site echoes", lambda: lab.open_connection(
            "lan1", a["site"]).alive()),
        ("lan1 -> c2 is counted on gw's forward hook", lambda: _forward_hook_counts(lab)),
    ]
    return checks


def _report(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}{f' ({detail})' if detail else ''}", flush=True)
    return ok


def _check(prefix: str) -> int:
    before = hostcheck.snapshot()
    results = []
    lab = Lab(prefix)
    with lab:
        pids = lab.pids()
        results.append(_report("lab comes up with its servers", len(pids) >= 5,
                               f"{len(pids)} processes"))
        for name, check in _checks(lab):
            try:
                ok, detail = check(), ""
            except Exception as error:
                ok, detail = False, str(error)
            results.append(_report(name, ok, detail))
    left = [name for name in lab.ns.values() if os.path.exists(f"/run/netns/{name}")]
    results.append(_report("namespaces deleted", not left, " ".join(left)))
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    results.append(_report("lab processes gone", not alive, str(alive) if alive else ""))
    diff = hostcheck.differences(before, hostcheck.snapshot())
    results.append(_report("host network unchanged", not diff, "\n".join(diff)))
    print(f"{sum(results)}/{len(results)} passed")
    return 0 if all(results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "check", "cleanup"))
    parser.add_argument("--prefix", default="bla", help="namespace name prefix (default: bla)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m lab: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.command == "up":
        return _up(args.prefix)
    if args.command == "check":
        return _check(args.prefix)
    removed = cleanup_stale(args.prefix)
    print("\n".join(f"removed {name}" for name in removed) or "nothing to clean up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
