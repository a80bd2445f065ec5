"""`make demo`: the whole product on a gateway lab, narrated, with a PASS/FAIL line per check.

    python -m lab.demo            (as root, from the repository root)

Builds the namespace lab (two LANs, a management subnet, the gateway, and a WAN side with an
ordinary site, a C2 server, an essential service and a peer hospital), publishes a signed feed
served over HTTPS from the WAN side (a throw-away CA that the agent's config trusts), starts
Unbound as the gateway's resolver and the agent daemon in the gateway namespace, and proves
with real probes from the LAN: before the feed, after the first sync, against a tampered and
an expired feed, and through an isolation drill. It tears everything down and checks that the
host's ruleset, routes, addresses and resolver configuration are exactly as they were.
Exit status: 0 if every check passed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.publish import minisign, publish
from lab import HTTP_PORT, Lab
from lab.httpserver import CertificateAuthority
from lab.resolvers import RPZ_ZONE, addresses, query, start_authoritative, start_unbound

ROOT = Path(__file__).resolve().parent.parent
PHISHING = "login-ameli.evil.example"
SITE_NAME = "www.hopital-partenaire.example"
FEED_PORT = 443


def host_snapshot() -> dict[str, str]:
    """What the demo must leave exactly as it found it."""
    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    resolv = Path("/etc/resolv.conf")
    return {
        "nft ruleset": out("nft", "list", "ruleset"),
        "addresses": out("ip", "-br", "addr"),
        "routes v4": out("ip", "route"),
        "routes v6": out("ip", "-6", "route"),
        "resolv.conf": resolv.read_text() if resolv.exists() else "",
    }


class Narrator:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passes = 0

    def step(self, title: str) -> None:
        print(f"\n=== {title}", flush=True)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}: {what}" + (f"  ({detail})" if detail and not ok
                                                        else ""), flush=True)
        if ok:
            self.passes += 1
        else:
            self.failures.append(what)
        return ok

    def show(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            print(f"    | {line}")


class Demo:
    def __init__(self, lab: Lab, work: Path, say: Narrator) -> None:
        self.lab, self.work, self.say = lab, work, say
        self.config = work / "agent.yaml"
        self.www = work / "www"
        self.pub, self.key = minisign.generate_keypair()
        self.serial = 0
        self.daemon: subprocess.Popen[Any] | None = None

    # -- helpers -------------------------------------------------------------------------
    def agent(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("gw", sys.executable, "-m", "agent", "-c", str(self.config), *args,
                            check=False, timeout=120)

    def publish(self, lines: list[str], *, now: datetime | None = None,
                expires: timedelta = timedelta(days=7)) -> None:
        self.serial += 1
        src = self.work / "src" / "indicators.txt"
        src.parent.mkdir(exist_ok=True)
        src.write_text("# CERT Santé (lab) — ransomware campaign indicators\n"
                       + "\n".join(lines) + "\n")
        publish([src], out_dir=self.www / "cert", key=self.key, publisher="CERT Santé (lab)",
                serial=self.serial, expires=expires,
                now=now or datetime.now(UTC) - timedelta(minutes=1))

    def tcp(self, src: str, dst: str) -> bool:
        return self.lab.tcp_probe(src, self.lab.addr[dst], HTTP_PORT, timeout=0.8)

    def resolves(self, name: str) -> set[str]:
        return addresses(query(self.lab, "lan1", self.lab.addr["gw_lan1"], name))

    def nxdomain(self, name: str) -> bool:
        msg = query(self.lab, "lan1", self.lab.addr["gw_lan1"], name)
        return msg is not None and msg.rcode() == 3

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.agent("status", "--json").stdout or "{}"))

    # -- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        lab, work = self.lab, self.work
        ca = CertificateAuthority(work / "pki")
        cert, key = ca.issue([lab.addr["feed"]])
        self.publish([f"# nothing yet serial {self.serial + 1}"])
        lab.spawn("wan", sys.executable, "-m", "lab.feedserver", str(self.www), str(cert),
                  str(key), lab.addr["feed"], str(FEED_PORT), cwd=str(ROOT))
        zone = (f"$TTL 60\n@ SOA ns.example. h.example. 1 60 10 600 60\n@ NS ns.example.\n"
                f"ns A {lab.addr['dns']}\n"
                f"{PHISHING}. A {lab.addr['c2']}\n{SITE_NAME}. A {lab.addr['site']}\n"
                f"cdn.hopital-partenaire.example. A {lab.addr['c2']}\n")
        self.auth = start_authoritative(lab, {"example.": zone})
        rpz = work / "rpz.zone"
        rpz.write_text("$TTL 60\n@ SOA localhost. h.localhost. 1 60 10 600 60\n"
                       "@ NS localhost.\n")
        self.unbound = start_unbound(lab, listen=[(lab.addr["gw_lan1"], 53)],
                                     upstream=(lab.addr["dns"], 53), rpz_zonefile=rpz)
        control = " ".join(self.unbound.control[4:])  # without "ip netns exec NS"
        self.config.write_text(f"""# the lab gateway's configuration (see config/agent.yaml)
state_dir: state
local_dir: local.d
feeds:
  - name: cert-sante
    url: https://{lab.addr['feed']}/cert/manifest.json
    trusted_keys: ["{self.pub.to_text()}"]
    ca_file: {ca.cert_file}
    refresh: 60s
guards:
  protected: [10.10.0.0/16, chu-lab.example]
  # the lab's "internet" uses documentation ranges
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [wan0]
  management: [10.10.99.0/24, fd00:10:99::/64]
dns:
  backend: unbound
  zone: {RPZ_ZONE}
  zonefile: {rpz}
  control: {control}
  server: {lab.addr['gw_lan1']}
isolation:
  allow: [{lab.addr['essential']}, "{lab.addr['essential6']}"]
  peers:
    ch-voisin: [203.0.113.128/25]
""")

    # -- the story ------------------------------------------------------------------------
    def before(self) -> None:
        s = self.say
        s.step("1. Before the feed: the C2 server and the phishing domain are reachable")
        s.check("lan1 connects to the C2 server 203.0.113.66", self.tcp("lan1", "c2"))
        s.check(f"lan1 resolves {PHISHING}", self.lab.addr["c2"] in self.resolves(PHISHING))

    def first_sync(self) -> None:
        s, lab = self.say, self.lab
        s.step("2. The CERT publishes; the agent daemon applies the feed")
        self.publish([lab.addr["c2"], lab.addr["c26"], "192.0.2.0/24", PHISHING,
                      "10.10.1.2",  # a publisher mistake: an internal host (refused)
                      "fr"])  # another one: a whole TLD (refused)
        self.daemon = lab.spawn("gw", sys.executable, "-m", "agent", "-c", str(self.config),
                                "run", cwd=str(self.work))
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            feed = status.get("feeds", {}).get("cert-sante", {})
            if feed.get("serial") == self.serial:
                break
            time.sleep(0.5)
        s.check("the daemon fetched, verified and applied serial "
                f"{self.serial} over HTTPS", status.get("feeds", {}).get("cert-sante", {})
                .get("serial") == self.serial, json.dumps(status.get("feeds"))[:300])
        s.check("C2 blocked (TCP, IPv4)", not self.tcp("lan1", "c2"))
        s.check("C2 blocked (TCP, IPv6)", not self.tcp("lan1", "c26"))
        s.check("bad prefix 192.0.2.0/24 blocked", not self.tcp("lan1", "bad_prefix_host"))
        s.check(f"{PHISHING} answers NXDOMAIN", self.nxdomain(PHISHING))
        s.check("the CDN name pointing at the C2 address is rewritten (rpz-ip)",
                not self.resolves("cdn.hopital-partenaire.example") & {lab.addr["c2"]})
        s.check("an ordinary site still works (TCP)", self.tcp("lan1", "site"))
        s.check(f"an ordinary name still resolves ({SITE_NAME})",
                lab.addr["site"] in self.resolves(SITE_NAME))
        s.check("the internal address in the feed was refused by the guard rails",
                self.tcp("lan2", "lan1"))
        status = self.status()
        offenders = {o["address"] for o in status.get("firewall", {}).get("offenders", [])}
        s.check("lan1 appears as an offender (a likely infected machine)",
                lab.addr["lan1"] in offenders, str(offenders))
        s.show(self.agent("status").stdout)
        s.show(self.agent("why", lab.addr["c2"]).stdout)

    def refusals(self) -> None:
        s, lab = self.say, self.lab
        s.step("3. A tampered feed and an expired feed are refused; protection stays")
        manifest = self.www / "cert" / "manifest.json"
        good = manifest.read_bytes()
        doc = json.loads(good)
        (self.www / "cert" / "indicators.txt").write_text("# nothing to block, promise\n")
        empty = (self.www / "cert" / "indicators.txt").read_bytes()
        doc["payloads"][0].update(sha256=hashlib.sha256(empty).hexdigest(), size=len(empty))
        doc["serial"] += 1
        self.serial = doc["serial"]
        manifest.write_text(json.dumps(doc))  # the attacker cannot re-sign it
        proc = self.agent("sync")
        feed = self.status().get("feeds", {}).get("cert-sante", {})
        s.check("tampered manifest refused (bad signature), sync exits 1",
                proc.returncode == 1 and (feed.get("error") or {}).get("reason") ==
                "bad-signature", proc.stdout[-300:])
        s.check("C2 still blocked after the tampered feed", not self.tcp("lan1", "c2"))
        self.publish([lab.addr["site"]], now=datetime.now(UTC) - timedelta(days=10))
        proc = self.agent("sync")
        feed = self.status().get("feeds", {}).get("cert-sante", {})
        s.check("expired feed refused, sync exits 1", proc.returncode == 1 and
                (feed.get("error") or {}).get("reason") == "expired", proc.stdout[-300:])
        s.check("C2 still blocked after the expired feed", not self.tcp("lan1", "c2"))
        s.check(f"{PHISHING} still NXDOMAIN", self.nxdomain(PHISHING))
        s.show(self.agent("status").stdout)

    def isolation(self) -> None:
        s = self.say
        s.step("4. Isolation drill: cut the internet, keep care running")
        proc = self.agent("isolate", "--reason", "drill: ransomware at CH voisin", "--yes")
        s.check("isolate succeeded", proc.returncode == 0, proc.stderr)
        s.show(proc.stdout)
        s.check("internet cut from lan1", not self.tcp("lan1", "site"))
        s.check("internet cut from the gateway itself", not self.tcp("gw", "site"))
        s.check("LAN-to-LAN still works (lan1 -> lan2)", self.tcp("lan1", "lan2"))
        s.check("management network still reaches out", self.tcp("mgmt", "site"))
        s.check("essential service still reachable", self.tcp("lan1", "essential"))
        proc = self.agent("restore", "--reason", "drill over")
        s.check("restore succeeded", proc.returncode == 0, proc.stderr)
        s.check("internet back after restore", self.tcp("lan1", "site"))
        s.check("C2 still blocked after restore", not self.tcp("lan1", "c2"))

    def stop_daemon(self) -> None:
        s = self.say
        if self.daemon is None:
            return
        self.daemon.send_signal(signal.SIGTERM)
        try:
            code = self.daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            code = -9
        s.check("the daemon stops cleanly on SIGTERM", code == 0, f"exit {code}")
        s.check("enforcement stays after the daemon stops (fails closed)",
                not self.tcp("lan1", "c2"))


def main() -> int:
    if os.geteuid() != 0:
        print("lab.demo: run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    say = Narrator()
    before = host_snapshot()
    work = Path(tempfile.mkdtemp(prefix="blocklist-agent-demo-"))
    print(f"blocklist-agent demo: lab in network namespaces, work dir {work}")
    try:
        with Lab(prefix="demo") as lab:
            demo = Demo(lab, work, say)
            demo.setup()
            try:
                demo.before()
                demo.first_sync()
                demo.refusals()
                demo.isolation()
            finally:
                demo.stop_daemon()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say.step("5. Teardown: nothing left behind")
    after = host_snapshot()
    for key in before:
        say.check(f"host {key} unchanged", before[key] == after[key])
    leftover = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout.split("\n")
                if n.startswith(f"demo-{os.getpid()}-")]
    say.check("no lab namespace left", not leftover, str(leftover))
    print(f"\n{say.passes} passed, {len(say.failures)} failed")
    return 0 if not say.failures else 1


if __name__ == "__main__":
    sys.exit(main())
