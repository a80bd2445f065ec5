"""The kill switch refuses to lie (issue 11), in the namespace lab with real nft and probes.

A wrong WAN name is refused; what is cut is read back from the kernel; a change of
wan_interfaces while isolated is applied by the next sync; isolation never waits on a dead
resolver; management is exact (a LAN host spoofing a management source gets nothing out, IPv4
with rp_filter=2 and IPv6; a management host is blocklisted like any other); clock jumps of
±3 h change nothing in the kernel; break-glass.nft keeps the essential services on a gateway
that never isolated; `--dry-run` changes nothing; the operator's own SSH session and a second
isolate are said. Tests run in order on one lab and one state directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import HTTP_PORT, Lab

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

TABLE = "blocklist_agent"
TELERAD = ("teleradiologie.lab.example", "203.0.113.41")  # always in the gateway's hosts file
PACS = ("pacs.lab.example", "203.0.113.23")  # in DNS at the first sync, then the resolver dies
RIS = "ris.lab.example"  # never resolved
UDP_PORT = 9999
CONFIG = """
state_dir: state
local_dir: local.d
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [{wan}]
  management: [10.10.99.0/24, fd00:10:99::/64]
guards:
  allow_special: [198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
dns:
  backend: none
isolation:
  allow: [203.0.113.20, "2001:db8:200::20", {telerad}, {pacs}, {ris}]
"""
# libfaketime preloaded into the agent itself (not the `faketime` wrapper, which would get the
# daemon's SIGTERM); it fakes the wall clock, not /proc/uptime
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
NO_FAKETIME = "faketime is not installed (scripts/install-deps.sh)"


def faked(jump: str) -> tuple[str, ...]:
    """`env` assignments running the agent with its wall clock moved by `jump` ("+3h")."""
    return (f"FAKETIME={jump}", f"LD_PRELOAD={LIBFAKETIME}")


@dataclass
class Gateway:
    lab: Lab
    root: Path
    hosts: Path

    def configure(self, wan: str = "wan0") -> None:
        (self.root / "agent.yaml").write_text(CONFIG.format(
            wan=wan, telerad=TELERAD[0], pacs=PACS[0], ris=RIS))

    def argv(self, *args: str, env: tuple[str, ...] = ()) -> list[str]:
        return ["env", *env, sys.executable, "-m", "agent", "-c", str(self.root / "agent.yaml"),
                *args]

    def cli(self, *args: str, check: bool = True, env: tuple[str, ...] = ()
            ) -> subprocess.CompletedProcess[str]:
        proc = self.lab.run("gw", *self.argv(*args, env=env), check=False, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def can(self, src: str, dst: str) -> bool:
        return self.lab.tcp_probe(src, self.lab.addr.get(dst, dst), HTTP_PORT, timeout=0.7)

    def iso_wan(self) -> dict[str, int | None]:
        """ifname -> seconds left, as the kernel holds it."""
        proc = self.lab.run("gw", "nft", "-j", "list", "set", "inet", TABLE, "iso_wan",
                            check=False)
        if proc.returncode:
            return {}
        out: dict[str, int | None] = {}
        for item in json.loads(proc.stdout)["nftables"]:
            for elem in item.get("set", {}).get("elem", []):
                if isinstance(elem, dict):
                    out[elem["elem"]["val"]] = elem["elem"].get("expires")
                else:
                    out[elem] = None
        return out

    def allows(self, address: str) -> bool:
        """Does the kernel's iso_allow set keep `address` open?"""
        family = "v6" if ":" in address else "v4"
        proc = self.lab.run("gw", "nft", "-j", "list", "set", "inet", TABLE,
                            f"iso_allow_{family}", check=False)
        if proc.returncode:
            return False
        wanted = ipaddress.ip_address(address)
        for item in json.loads(proc.stdout)["nftables"]:
            for elem in item.get("set", {}).get("elem", []):
                if isinstance(elem, str) and ipaddress.ip_address(elem) == wanted:
                    return True
                if isinstance(elem, dict) and "prefix" in elem and wanted in ipaddress.ip_network(
                        f"{elem['prefix']['addr']}/{elem['prefix']['len']}"):
                    return True
                if isinstance(elem, dict) and "range" in elem:
                    low, high = (ipaddress.ip_address(a) for a in elem["range"])
                    if int(low) <= int(wanted) <= int(high) and low.version == wanted.version:
                        return True
        return False

    def history(self) -> list[dict[str, Any]]:
        path = self.root / "state" / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() \
            else []

    def udp_arrives(self, src: str, src_addr: str, dst: str) -> bool:
        """Does a datagram from `src` (bound to `src_addr`) reach `dst` in ns wan?"""
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        rx = self.lab.make_socket("wan", family, socket.SOCK_DGRAM)
        tx = self.lab.make_socket(src, family, socket.SOCK_DGRAM)
        try:
            rx.bind((dst, UDP_PORT))
            rx.settimeout(0.5)
            tx.bind((src_addr, 0))
            token = os.urandom(8)
            for _ in range(3):
                tx.sendto(token, (dst, UDP_PORT))
            try:
                while True:
                    data, _ = rx.recvfrom(64)
                    if data == token:
                        return True
            except TimeoutError:
                return False
        finally:
            rx.close()
            tx.close()


@pytest.fixture(scope="module")
def gw(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("iso-trust")
    (root / "local.d").mkdir()
    netns_etc = Path("/etc/netns") / lab.ns["gw"]
    netns_etc.mkdir(parents=True)
    hosts = netns_etc / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{TELERAD[1]} {TELERAD[0]}\n{PACS[1]} {PACS[0]}\n")
    # the gateway's resolver is on the internet side; its packets are dropped there (a dead
    # resolver) from the start: names resolve from the hosts file, or time out
    (netns_etc / "resolv.conf").write_text(f"nameserver {lab.addr['dns']}\noptions timeout:5\n")
    lab.nft("wan", "table inet dead_dns {\n\tchain input {\n\t\ttype filter hook input "
                   "priority 0;\n\t\tudp dport 53 drop\n\t\ttcp dport 53 drop\n\t}\n}\n")
    gateway = Gateway(lab, root, hosts)
    gateway.configure()
    try:
        yield gateway
    finally:
        shutil.rmtree(netns_etc)


def test_a_first_sync_stores_the_names(gw: Gateway) -> None:
    gw.cli("sync")
    names = json.loads((gw.root / "state" / "allow-names.json").read_text())
    assert names[PACS[0]]["addresses"] == [PACS[1]]
    assert names[TELERAD[0]]["addresses"] == [TELERAD[1]]
    assert "addresses" not in names.get(RIS, {})  # the dead resolver never answered
    glass = (gw.root / "state" / "break-glass.nft").read_text()
    assert PACS[1] in glass and TELERAD[1] in glass and "10.10.99.0/24" in glass


def test_check_config_warns_about_an_absent_interface(gw: Gateway) -> None:
    gw.configure(wan="ens18")
    proc = gw.cli("check-config")
    assert "ens18 does not exist" in proc.stderr
    doc = json.loads(gw.cli("check-config", "--json").stdout)
    assert doc["valid"] and any("ens18" in w for w in doc["warnings"])


def test_a_wrong_wan_name_is_refused(gw: Gateway) -> None:
    proc = gw.cli("isolate", "--reason", "wrong name", "--yes", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ens18, which does not exist" in proc.stderr
    assert "default route leaves through wan0" in proc.stderr
    assert "wan_interfaces: [wan0]" in proc.stderr and "--force" in proc.stderr
    assert gw.iso_wan() == {} and gw.can("lan1", "site")


def test_force_isolates_loudly_and_reports_what_the_kernel_cuts(gw: Gateway) -> None:
    proc = gw.cli("isolate", "--reason", "forced", "--yes", "--force")
    assert "WARNING: --force" in proc.stderr and "THE CUT MAY NOT HOLD" in proc.stderr
    assert "the kernel cuts ens18, which does not exist" in proc.stderr
    assert "traffic through wan0 is NOT cut" in proc.stderr
    assert "cut: all traffic through ens18" in proc.stdout
    assert gw.iso_wan() == {"ens18": None}
    assert gw.can("lan1", "site"), "a name that does not exist cuts nothing"


def test_changing_wan_interfaces_while_isolated_is_applied_by_the_next_sync(gw: Gateway) -> None:
    gw.configure(wan="wan0")
    report = json.loads(gw.cli("sync", "--json").stdout)
    assert any("isolation re-applied" in n for n in report["applied_notes"]), report
    assert gw.iso_wan() == {"wan0": None}
    assert not gw.can("lan1", "site") and gw.can("lan1", "essential")
    status = json.loads(gw.cli("status", "--json", check=False).stdout)["isolation"]
    assert status["active"] and status["cut"] == ["wan0"] and status["by"]


def test_a_spoofed_management_source_gets_nothing_out(gw: Gateway) -> None:
    lab = gw.lab
    gw.cli("restore", "--reason", "spoofing test")
    lab.run("gw", "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=2",
            "net.ipv4.conf.lan0.rp_filter=2")
    spoofs = (("10.10.99.50", lab.addr["site"]), ("fd00:10:99::50", lab.addr["site6"]))
    lab.run("lan1", "ip", "addr", "add", "10.10.99.50/32", "dev", "eth0")
    lab.run("lan1", "ip", "addr", "add", "fd00:10:99::50/128", "dev", "eth0", "nodad")
    try:
        for src, dst in spoofs:  # the control: loose rp_filter (and IPv6) let it through
            assert gw.udp_arrives("lan1", src, dst), f"control: {src} -> {dst}"
        gw.cli("isolate", "--reason", "spoofing test", "--yes")
        for src, dst in spoofs:
            assert not gw.udp_arrives("lan1", src, dst), f"spoofed {src} got out to {dst}"
    finally:  # the lab's LAN host gets its own addresses back only
        lab.run("lan1", "ip", "addr", "del", "10.10.99.50/32", "dev", "eth0")
        lab.run("lan1", "ip", "addr", "del", "fd00:10:99::50/128", "dev", "eth0")
    assert gw.udp_arrives("mgmt", lab.addr["mgmt"], lab.addr["site"])
    assert gw.udp_arrives("mgmt", lab.addr["mgmt6"], lab.addr["site6"])
    assert gw.can("mgmt", "site") and gw.can("mgmt", "site6")
    assert not gw.can("lan1", "site")


def test_ipv6_neighbour_discovery_survives_the_cut(gw: Gateway) -> None:
    """Without NDP on the WAN link, the upstream forgets the gateway's link address within a
    minute and every IPv6 packet still allowed stops: forgotten here at once."""
    lab = gw.lab
    for role in ("wan", "gw", "mgmt", "lan1"):
        lab.run(role, "ip", "-6", "neigh", "flush", "all")
    assert lab.tcp_probe("mgmt", lab.addr["site6"], HTTP_PORT, timeout=2)
    assert lab.tcp_probe("lan1", lab.addr["essential6"], HTTP_PORT, timeout=2)
    assert not gw.can("lan1", "site6")


def test_a_management_host_cannot_reach_a_blocked_address(gw: Gateway) -> None:
    lab = gw.lab
    for value in ("c2", "c26"):
        gw.cli("deny", lab.addr[value], "--reason", "C2 of the week")
    gw.cli("sync")
    assert not gw.can("mgmt", "c2") and not gw.can("mgmt", "c26"), "during isolation"
    gw.cli("restore", "--reason", "blocklist test")
    assert not gw.can("mgmt", "c2") and not gw.can("mgmt", "c26")
    assert gw.can("mgmt", "site") and gw.can("lan1", "site")


def test_isolate_never_waits_on_a_dead_resolver(gw: Gateway) -> None:
    gw.hosts.write_text(f"127.0.0.1 localhost\n{TELERAD[1]} {TELERAD[0]}\n")  # PACS: DNS only
    t0 = time.monotonic()
    proc = gw.cli("isolate", "--reason", "dead resolver", "--yes")
    took = time.monotonic() - t0
    print(f"\nisolate with a dead resolver: the command took {took * 1000:.0f} ms")
    assert took < 4.0, "it waited for the resolver (5 s per attempt)"
    assert f"WARNING: {PACS[0]} did not resolve; it is open with its last known" in proc.stdout
    assert f"WARNING: {RIS} did not resolve; it is NOT reachable" in proc.stdout
    assert gw.can("lan1", PACS[1]), "the stored address of an allowed name stays open"
    assert gw.can("lan1", TELERAD[1]) and not gw.can("lan1", "site")


def test_dry_run_changes_nothing(gw: Gateway) -> None:
    def snapshot() -> tuple[str, dict[str, tuple[float, int]]]:
        sets = ["iso_wan", "iso_allow_v4", "iso_allow_v6", "peer_v4", "peer_v6", "mgmt_v4"]
        ruleset = re.sub(r"packets \d+ bytes \d+", "", gw.lab.run(
            "gw", "nft", "-t", "list", "table", "inet", TABLE).stdout) + "".join(
            gw.lab.run("gw", "nft", "list", "set", "inet", TABLE, name).stdout for name in sets)
        files = {p.name: (p.stat().st_mtime, p.stat().st_size)
                 for p in (gw.root / "state").iterdir() if p.is_file()}
        return ruleset, files

    gw.cli("restore", "--reason", "dry run test")
    before = snapshot()
    proc = gw.cli("isolate", "--dry-run", "--reason", "what if")
    assert proc.stdout.startswith("DRY RUN: nothing was changed.")
    assert "would cut: all traffic through wan0" in proc.stdout
    assert f"{TELERAD[0]} ({TELERAD[1]})" in proc.stdout and f"{PACS[0]} ({PACS[1]})" in \
        proc.stdout
    assert "would stay open:" in proc.stdout and "10.10.99.0/24" in proc.stdout
    doc = json.loads(gw.cli("isolate", "--dry-run", "--json", "--reason", "x").stdout)
    assert doc["dry_run"] and doc["would_cut"] == ["wan0"] and doc["preflight"]["ok"]
    assert doc["resolved"][TELERAD[0]] == [TELERAD[1]]
    after = snapshot()
    assert after[1] == before[1], "the state directory was changed"
    assert after[0] == before[0], "\n".join(
        set(after[0].splitlines()) ^ set(before[0].splitlines()))
    assert gw.can("lan1", "site")


def test_a_second_isolate_keeps_the_first_author(gw: Gateway) -> None:
    gw.cli("isolate", "--reason", "ransomware at CH voisin", "--yes", env=("SUDO_USER=alice",))
    proc = gw.cli("isolate", "--reason", "still spreading", "--yes", env=("SUDO_USER=bob",))
    assert proc.stdout.startswith("extending the running isolation")
    assert "by bob: still spreading" in proc.stdout
    assert "earlier: isolated since" in proc.stdout and "by alice: ransomware" in proc.stdout
    last = gw.history()[-1]
    assert last["mode"] == "extending" and last["previous"]["by"] == "alice"
    assert last["previous"]["reason"] == "ransomware at CH voisin"
    proc = gw.cli("isolate", "--for", "1h", "--reason", "bounded", "--yes")
    assert proc.stdout.startswith("replacing the running isolation")
    status = gw.cli("status", check=False).stdout
    assert "by alice: ransomware at CH voisin" in status and "by bob: still spreading" in status


def test_who_comes_from_the_login_uid(gw: Gateway) -> None:
    argv = " ".join(f"'{a}'" for a in gw.argv("restore", "--reason", "who test"))
    gw.lab.run("gw", "sh", "-c", f"echo 65534 > /proc/self/loginuid && SUDO_USER=alice "
                                 f"exec {argv}")
    assert gw.history()[-1]["by"] == "nobody"  # uid 65534, whatever SUDO_USER says


def test_the_prompt_says_the_ssh_session_arrives_over_the_wan(gw: Gateway) -> None:
    gw.cli("isolate", "--reason", "first", "--yes", env=("SUDO_USER=alice",))
    ssh = f"SSH_CONNECTION={gw.lab.addr['wan']} 50000 {gw.lab.addr['gw_wan']} 22"
    argv = ["ip", "netns", "exec", gw.lab.ns["gw"],
            *gw.argv("isolate", "--reason", "second", env=(ssh,))]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 1)[0]:
            seen += os.read(master, 4096)
    os.write(master, b"n\n")
    with contextlib.suppress(OSError):
        while select.select([master], [], [], 5)[0]:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 1
    text = seen.decode(errors="replace")
    assert "your SSH session arrives over wan0" in text and "--for" in text, text
    assert "Already ISOLATED since" in text and "by alice (first)" in text and \
        "this is extending it" in text
    assert "nothing done" in text
    gw.cli("restore", "--reason", "prompt test")


@pytest.mark.skipif(LIBFAKETIME is None, reason=NO_FAKETIME)
def test_clock_jumps_change_nothing_in_the_kernel(gw: Gateway) -> None:
    gw.cli("isolate", "--for", "2h", "--reason", "clock drill", "--yes")
    t0, left0 = time.monotonic(), gw.iso_wan()["wan0"]
    assert left0 is not None and left0 > 7000
    lifts = sum(1 for h in gw.history() if h.get("by") == "deadline")
    for jump in ("+3h", "-3h"):
        env = faked(jump)
        gw.cli("status", check=False, env=env)
        gw.cli("why", gw.lab.addr["c2"], env=env)
        daemon = gw.lab.spawn("gw", *gw.argv("run", env=env), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
        left = gw.iso_wan().get("wan0")
        elapsed = time.monotonic() - t0
        print(f"\nfaketime {jump}: iso_wan wan0 {left} s left ({left0} s at isolate, "
              f"{elapsed:.0f} s ago)")
        assert left is not None and left0 - elapsed - 3 <= left <= left0, jump
        assert not gw.can("lan1", "site")
        assert sum(1 for h in gw.history() if h.get("by") == "deadline") == lifts
        doc = json.loads(gw.cli("status", "--json", check=False, env=env).stdout)
        assert doc["isolation"]["active"] and 0 < doc["isolation"]["left"] <= left0


@pytest.mark.skipif(LIBFAKETIME is None, reason=NO_FAKETIME)
def test_a_backward_jump_does_not_bring_back_a_lifted_isolation(gw: Gateway) -> None:
    gw.cli("isolate", "--for", "2s", "--reason", "short", "--yes")
    time.sleep(3)
    assert gw.iso_wan() == {} and gw.can("lan1", "site")
    env = faked("-3h")
    gw.lab.run("gw", "nft", "delete", "table", "inet", TABLE)  # the next sync reloads whole
    gw.cli("sync", env=env)
    assert gw.iso_wan() == {} and gw.can("lan1", "site")
    daemon = gw.lab.spawn("gw", *gw.argv("run", env=env), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    time.sleep(4)
    daemon.terminate()
    daemon.wait(timeout=30)
    assert gw.iso_wan() == {} and gw.can("lan1", "site")
    assert gw.history()[-1]["by"] == "deadline"  # the daemon recorded the lift, once
    assert sum(1 for h in gw.history()[-3:] if h.get("by") == "deadline") == 1


def _daemon_until(gw: Gateway, done: Callable[[], bool], timeout: float = 20.0) -> float:
    """Run the daemon until `done()` holds (at most `timeout` s), stop it; the seconds it took.

    Not a fixed sleep: the daemon's first sync resolves the lifelines and the allowlist's names
    before anything else, and the gateway's resolver (dead, but a lifeline that isolation keeps
    open) makes that wait its whole deadlines (lifelines.DEADLINE + resolve.DEADLINE)."""
    daemon = gw.lab.spawn("gw", *gw.argv("run"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    try:
        while not done() and time.monotonic() - start < timeout:
            time.sleep(0.1)
        return time.monotonic() - start
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err


def test_after_a_reboot_the_time_left_applies(gw: Gateway) -> None:
    lab = gw.lab
    state = gw.root / "state"
    gw.cli("isolate", "--for", "2h", "--reason", "reboot drill", "--yes")
    resolver = lab.addr["dns"]  # the gateway's resolver (its resolv.conf): a lifeline
    assert gw.allows(resolver)
    # as if 100 minutes had passed: the kernel's element timeout says 20 minutes are left
    lab.nft("gw", f"flush set inet {TABLE} iso_wan\n"
                  f'add element inet {TABLE} iso_wan {{ "wan0" timeout 1200s }}\n')

    def boot_file_left() -> int | None:
        found = re.search(r'"wan0" timeout (\d+)s', (state / "isolation.nft").read_text())
        return int(found[1]) if found else None

    _daemon_until(gw, lambda: (boot_file_left() or 7200) <= 1200)
    left_in_file = boot_file_left()
    assert left_in_file is not None and 1100 < left_in_file <= 1200, left_in_file
    # the reboot: the kernel forgets everything; the boot unit loads enforced.nft, which
    # includes isolation.nft
    assert (state / "enforced.nft").read_text().rstrip().endswith(
        f'include "{state / "isolation.nft"}"')
    lab.run("gw", "nft", "flush", "ruleset")
    lab.run("gw", "nft", "-f", str(state / "enforced.nft"))
    left = gw.iso_wan()["wan0"]
    print(f"\nafter the reboot: {left} s left of a 2 h isolation with 20 min to go")
    assert left is not None and 1100 < left <= 1200
    assert gw.allows(resolver), "the boot files close a lifeline that isolate kept open"
    # a record of another boot is re-based on this boot's clock from the kernel's time left
    record = json.loads((state / "isolation.json").read_text())
    record["boot_id"] = "an-earlier-boot"
    (state / "isolation.json").write_text(json.dumps(record))
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    took = _daemon_until(gw, lambda: json.loads(
        (state / "isolation.json").read_text())["boot_id"] == boot_id)
    print(f"the daemon re-based the record after {took:.1f} s")
    record = json.loads((state / "isolation.json").read_text())
    assert record["boot_id"] == boot_id
    assert record["active"] and 1100 < record["left"] <= 1200
    assert gw.allows(resolver)
    gw.cli("restore", "--reason", "reboot drill over")


def test_reloads_and_repairs_during_isolation_keep_the_lifelines(gw: Gateway) -> None:
    """isolate, a sync's full reload, break-glass.nft, the kernel watcher's repairs and
    `status` share one definition of the essentials: the gateway's own resolver (a lifeline,
    from its resolv.conf) stays open through each, and status sees no drift."""
    lab = gw.lab
    resolver = lab.addr["dns"]
    assert resolver not in CONFIG  # open as a lifeline only, not through isolation.allow

    def agreed(when: str) -> None:
        doc = json.loads(gw.cli("status", "--json", check=False).stdout)
        assert doc["isolation"]["active"], when
        assert doc["kernel_disagrees"] == [], f"{when}: {doc['kernel_disagrees']}"
        assert doc["isolation"]["disagreement"] is None, when
        assert gw.allows(resolver), f"{when}: the lifeline {resolver} is closed"
        assert gw.can("gw", "dns") and not gw.can("gw", "site"), when  # the gateway itself
        assert not gw.can("lan1", "site"), when

    gw.cli("isolate", "--reason", "lifeline drill", "--yes")
    agreed("after isolate")
    lab.run("gw", "nft", "delete", "table", "inet", TABLE)
    report = json.loads(gw.cli("sync", "--json").stdout)
    assert any("full reload" in n for n in report["applied_notes"]), report
    agreed("after a sync's full reload")
    assert resolver in (gw.root / "state" / "break-glass.nft").read_text()
    report = json.loads(gw.cli("sync", "--json").stdout)  # nothing to re-apply: no drift
    assert not any("isolation re-applied" in n for n in report["applied_notes"]), report
    daemon = lab.spawn("gw", *gw.argv("run"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    try:
        def watching() -> bool:
            return "nft monitor" in lab.run("gw", "ps", "-o", "args=", "--ppid",
                                            str(daemon.pid), check=False).stdout
        started = time.monotonic()
        while not watching():
            assert time.monotonic() - started < 30, "the daemon's kernel watcher never started"
            time.sleep(0.1)
        time.sleep(0.5)  # the monitor is listening
        for what, damage in (("the allow set flushed", f"flush set inet {TABLE} iso_allow_v4\n"),
                             ("nft flush ruleset", "flush ruleset\n")):
            lab.nft("gw", damage)
            started = time.monotonic()
            while not (gw.iso_wan() == {"wan0": None} and gw.allows(resolver)):
                assert time.monotonic() - started < 10, f"{what}: not repaired"
                time.sleep(0.1)
            time.sleep(1.0)  # the repair's own events folded: nothing more comes
            agreed(f"after the watcher repaired {what}")
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "isolation re-applied" not in err, err
    gw.cli("restore", "--reason", "lifeline drill over")


def test_break_glass_without_a_prior_isolate_keeps_the_essential_services(
        lab: Lab, tmp_path: Path) -> None:
    fresh = Gateway(lab, tmp_path, Path("/etc/netns") / lab.ns["gw"] / "hosts")
    (tmp_path / "local.d").mkdir()
    fresh.configure()
    fresh.hosts.write_text(f"127.0.0.1 localhost\n{TELERAD[1]} {TELERAD[0]}\n")
    lab.run("gw", "nft", "delete", "table", "inet", TABLE, check=False)
    fresh.cli("sync")  # a gateway that never ran isolate
    assert not (tmp_path / "state" / "isolation.json").exists() or not json.loads(
        (tmp_path / "state" / "isolation.json").read_text()).get("active")
    lab.run("gw", "nft", "flush", "ruleset")
    lab.run("gw", "nft", "-f", str(tmp_path / "state" / "break-glass.nft"))
    assert not fresh.can("lan1", "site") and not fresh.can("lan1", "site6")
    assert fresh.can("lan1", "essential") and fresh.can("lan1", TELERAD[1])
    assert fresh.can("mgmt", "site") and fresh.can("lan1", "lan2")
    status = fresh.cli("status", check=False)
    assert "ISOLATED since" in status.stdout and "by break-glass" in status.stdout
    fresh.cli("sync")  # a reload keeps it
    assert fresh.iso_wan() == {"wan0": None} and not fresh.can("lan1", "site")
    fresh.cli("restore", "--reason", "break-glass drill over")
    assert fresh.can("lan1", "site")
