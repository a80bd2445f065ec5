"""The namespace lab itself: topology, probes, nft in gw, teardown, and that the host is untouched.

Every later firewall, DNS and isolation test trusts this lab to (1) route LAN traffic through gw's
forward hook, (2) tell a blocked path from a working one, and (3) leave nothing behind on the
host. These tests prove those three things with real packets, as root, in namespaces only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import ECHO_PORT, HTTP_PORT, Lab, LabCommandError, LabError, hostcheck
from lab.core import cleanup_stale, lab_namespaces, pids_in_namespaces
from lab.topology import LINKS, NETS, WAN_HOSTS

pytest_plugins = ["lab.pytest_plugin"]

REPO = Path(__file__).resolve().parents[2]
BLOCKED = 0.3  # seconds: long enough for a SYN across veths, short enough to keep the file fast
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def _nft_table(lab: Lab, name: str, rules: str) -> Callable[[], None]:
    """Load a test table in gw's forward hook; return the function that deletes it again."""
    lab.nft("gw", f"""
        table inet {name} {{
            chain forward {{
                type filter hook forward priority 0; policy accept;
                {rules}
            }}
        }}
    """)

    def remove() -> None:
        lab.nft("gw", f"delete table inet {name}")

    return remove


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- topology ----------------------------------------------------------------------------------

def test_namespaces_are_unique_and_named_as_configured(lab: Lab) -> None:
    stem = f"bla-{os.getpid()}-{lab.tag}-"
    assert set(lab.ns) == {"gw", "lan1", "lan2", "mgmt", "wan"}
    for role, name in lab.ns.items():
        assert name == stem + role
        assert os.path.exists(f"/run/netns/{name}")
    gw_links = lab.run("gw", "ip", "-o", "link").stdout
    names = {m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)", gw_links, re.M)}
    assert names == {"lo", "lan0", "lan1", "mgmt0", "wan0"}
    assert lab.gw_if == {"lan1": "lan0", "lan2": "lan1", "mgmt": "mgmt0", "wan": "wan0"}
    for role in lab.ns:
        out = lab.run(role, "ip", "-o", "link").stdout
        assert all(len(m.group(1)) <= 15 for m in re.finditer(r"^\d+: ([^:@]+)", out, re.M))


def test_gw_forwards_and_clients_do_not(lab: Lab) -> None:
    keys = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
    assert lab.run("gw", "sysctl", "-n", *keys).stdout.split() == ["1", "1"]
    assert lab.run("lan1", "sysctl", "-n", *keys).stdout.split() == ["0", "0"]


def test_address_table_matches_the_lab(lab: Lab) -> None:
    assert lab.addr["lan1"] == "10.10.1.2" and lab.addr["gw_lan1"] == "10.10.1.1"
    assert lab.addr["site6"] == "2001:db8:200::10" and lab.addr["c26"] == "2001:db8:200::66"
    assert lab.net["mgmt"] == "10.10.99.0/24"
    gw_addrs = lab.run("gw", "ip", "-o", "addr").stdout
    for link in LINKS:
        assert link.gw4 in gw_addrs and link.gw6 in gw_addrs
    wan_addrs = lab.run("wan", "ip", "-o", "addr").stdout
    for v4, v6 in WAN_HOSTS.values():
        assert f"{v4}/32" in wan_addrs and f"{v6}/128" in wan_addrs
    readme = (REPO / "lab" / "README.md").read_text()
    for name, value in [*lab.addr.items(), *NETS.items()]:
        assert f"`{name}`" in readme and value in readme, f"{name} missing from lab/README.md"


# --- connectivity ------------------------------------------------------------------------------

@pytest.mark.parametrize("dst", ["site", "site6"])
def test_lan1_reaches_site_through_gw(lab: Lab, dst: str) -> None:
    assert lab.tcp_probe("lan1", lab.addr[dst], HTTP_PORT)
    assert lab.http_get("lan1", lab.addr[dst]) == "ok\n"  # a real client: curl


@pytest.mark.parametrize(("src", "dst"), [("lan1", "lan2"), ("lan1", "lan26"),
                                          ("lan2", "lan1"), ("lan2", "lan16")])
def test_lan_to_lan(lab: Lab, src: str, dst: str) -> None:
    assert lab.probe(src, lab.addr[dst], ECHO_PORT) == "connected"


@pytest.mark.parametrize("dst", ["site", "site6", "essential", "essential6", "gw_mgmt"])
def test_mgmt_reaches_wan_and_gw(lab: Lab, dst: str) -> None:
    assert lab.tcp_probe("mgmt", lab.addr[dst], HTTP_PORT)


@pytest.mark.parametrize("dst", [name + v for name in WAN_HOSTS for v in ("", "6")]
                         + ["192.0.2.200", "2001:db8:bad::beef", "203.0.113.99"])
def test_every_internet_host_answers(lab: Lab, dst: str) -> None:
    """Named hosts and any address of the AnyIP prefixes (what a prefix-block test will pick)."""
    assert lab.tcp_probe("lan1", lab.addr.get(dst, dst), HTTP_PORT)


def test_inbound_from_internet_hosts(lab: Lab) -> None:
    a = lab.addr
    assert lab.tcp_probe("wan", a["lan1"], ECHO_PORT, src_addr=a["c2"])
    assert lab.tcp_probe("wan", a["lan16"], ECHO_PORT, src_addr=a["c26"])


def test_probe_tells_drop_reject_and_no_server_apart(lab: Lab) -> None:
    a = lab.addr
    remove = _nft_table(lab, "t_outcomes", f"""
        ip daddr {a['essential']} tcp dport {HTTP_PORT} reject with tcp reset
        ip daddr {a['feed']} reject with icmpx type admin-prohibited
        ip daddr {a['dns']} drop""")
    try:
        assert lab.probe("lan1", a["essential"], HTTP_PORT) == "refused"
        assert lab.probe("lan1", a["feed"], HTTP_PORT) == "unreachable"
        assert lab.probe("lan1", a["dns"], HTTP_PORT, timeout=BLOCKED) == "timeout"
        assert lab.probe("lan1", a["site"], 9) == "refused"  # no server there
    finally:
        remove()


# --- nft inside gw -----------------------------------------------------------------------------

def test_nft_drop_in_gw_blocks_c2_and_nothing_else(lab: Lab) -> None:
    """The forwarding path goes through gw's forward hook: a drop there is what lan1 sees."""
    a = lab.addr
    remove = _nft_table(lab, "t_drop", f"ip daddr {a['c2']} counter drop\n"
                                       f"ip6 daddr {a['c26']} counter drop")
    try:
        assert lab.probe("lan1", a["c2"], HTTP_PORT, timeout=BLOCKED) == "timeout"
        assert lab.probe("lan1", a["c26"], HTTP_PORT, timeout=BLOCKED) == "timeout"
        assert lab.http_get("lan1", a["site"]) == "ok\n"
        assert lab.tcp_probe("lan1", a["site6"], HTTP_PORT)
        assert lab.tcp_probe("lan1", a["lan2"], ECHO_PORT)
        counts = lab.run("gw", "nft", "list", "table", "inet", "t_drop").stdout
        assert re.findall(r"counter packets (\d+)", counts) and all(
            int(n) > 0 for n in re.findall(r"counter packets (\d+)", counts))
    finally:
        remove()
    assert lab.tcp_probe("lan1", a["c2"], HTTP_PORT)


@pytest.mark.parametrize("dst", ["c2", "c26"])
def test_held_connection_dies_when_gw_drops_established(lab: Lab, dst: str) -> None:
    """An established connection is cut by a rule added after it was opened.

    The rule's table (and so conntrack, which a namespace only runs while some rule uses `ct`)
    exists before the connection opens; only the address is added later. Conntrack started
    after the handshake would pick the connection up mid-stream as `ct state new`, and a
    `ct state established` rule would let its next packet through.
    """
    a = lab.addr
    family, settype = ("ip6", "ipv6_addr") if dst.endswith("6") else ("ip", "ipv4_addr")
    lab.nft("gw", f"""
        table inet t_cut {{
            set cut {{ type {settype}; }}
            chain forward {{
                type filter hook forward priority 0; policy accept;
                ct state established {family} daddr @cut drop
            }}
        }}""")
    try:
        with lab.open_connection("lan1", a[dst], ECHO_PORT) as to_c2, \
                lab.open_connection("lan1", a["site"], ECHO_PORT) as to_site:
            assert to_c2.alive() and to_site.alive()
            lab.nft("gw", f"add element inet t_cut cut {{ {a[dst]} }}")
            assert not to_c2.alive(timeout=BLOCKED)
            assert to_site.alive()
            assert lab.tcp_probe("lan1", a[dst], ECHO_PORT)  # a new connection is not cut
    finally:
        lab.nft("gw", "delete table inet t_cut")
    assert to_c2.closed and not to_c2.alive()


# --- helpers -----------------------------------------------------------------------------------

def test_run_reports_stderr_and_unknown_roles(lab: Lab) -> None:
    with pytest.raises(LabCommandError, match="boom") as failure:
        lab.run("gw", "sh", "-c", "echo boom >&2; exit 3")
    assert failure.value.returncode == 3
    assert lab.run("gw", "sh", "-c", "exit 4", check=False).returncode == 4
    assert lab.run("lan1", "cat", input=b"abc").stdout == "abc"
    with pytest.raises(LabError, match="no lab namespace"):
        lab.run("host", "true")


def test_serve_tcp_echo_and_http(lab: Lab) -> None:
    a = lab.addr
    echo = lab.serve_tcp("lan2", a["lan2"], 9000)
    http = lab.serve_tcp("wan", a["feed6"], 8080)
    with lab.open_connection("lan1", a["lan2"], 9000) as conn:
        assert conn.alive()
    assert lab.http_get("lan1", a["feed6"], 8080) == "ok\n"
    assert not lab.tcp_probe("lan1", a["feed"], 8080)  # bound to the v6 address only
    for proc in (echo, http):
        proc.terminate()
        proc.wait(timeout=5)
    assert lab.probe("lan1", a["lan2"], 9000) == "refused"


def test_two_labs_side_by_side_do_not_interfere(
    lab: Lab, lab_factory: Callable[..., Lab]
) -> None:
    other = lab_factory("blt", servers=False)
    assert not set(other.ns.values()) & set(lab.ns.values())
    other.nft("gw", "table inet t_all { chain f { type filter hook forward priority 0; "
                    "policy drop; }; }")
    assert lab.tcp_probe("lan1", lab.addr["site"], HTTP_PORT)
    assert other.probe("lan1", other.addr["site"], HTTP_PORT, timeout=BLOCKED) == "timeout"


# --- teardown and the host ---------------------------------------------------------------------

@needs_root
def test_teardown_on_exception_removes_everything_and_host_is_unchanged() -> None:
    before = hostcheck.snapshot()
    the_lab = Lab("bltlife")
    with pytest.raises(RuntimeError, match="boom"), the_lab:
        names = list(the_lab.ns.values())
        ids = list(the_lab.namespace_ids().values())
        _nft_table(the_lab, "t_keep", f"ip daddr {the_lab.addr['c2']} drop")
        the_lab.spawn("lan1", "sleep", "300")
        # A process that escaped tracking (forked to the background) must be found too.
        the_lab.run("lan2", "sh", "-c", "sleep 300 >/dev/null 2>&1 &")
        conn = the_lab.open_connection("lan1", the_lab.addr["site"])
        pids = the_lab.pids()
        assert len(pids) >= 7  # 5 servers + 2 sleeps
        raise RuntimeError("boom")
    assert not [name for name in names if os.path.exists(f"/run/netns/{name}")]
    assert not [name for name in lab_namespaces("bltlife") if f"-{os.getpid()}-" in name]
    assert not [pid for pid in pids if _alive(pid)]
    assert pids_in_namespaces(ids) == []
    assert not conn.alive()
    assert hostcheck.differences(before, hostcheck.snapshot()) == []
    the_lab.down()  # idempotent
    with pytest.raises(LabError, match="torn down"):
        the_lab.up()


def _start_cli_up(prefix: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "lab", "up", "--prefix", prefix], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    watchdog = threading.Timer(15, proc.kill)  # a hung child ends the loop below with EOF
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("READY "):
                return proc, line.split()[1]
    finally:
        watchdog.cancel()
    proc.kill()
    raise AssertionError("python -m lab up did not get ready")


@pytest.fixture
def cli_prefix() -> Iterator[str]:
    """A prefix for labs run by child processes; whatever a failed test leaves is cleaned."""
    yield "bltcli"
    cleanup_stale("bltcli")


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_up_tears_down_on_signal(cli_prefix: str, sig: signal.Signals) -> None:
    proc, stem = _start_cli_up(cli_prefix)
    try:
        assert len([n for n in lab_namespaces(cli_prefix) if n.startswith(stem + "-")]) == 5
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "lab down" in out
    assert not [n for n in lab_namespaces(cli_prefix) if n.startswith(stem + "-")]


@needs_root
def test_owner_killed_leaves_no_process_and_cleanup_removes_its_namespaces(
    cli_prefix: str, lab_factory: Callable[..., Lab]
) -> None:
    live = lab_factory(cli_prefix, servers=False)  # same prefix, owner alive, no process inside
    proc, stem = _start_cli_up(cli_prefix)
    names = [n for n in lab_namespaces(cli_prefix) if n.startswith(stem + "-")]
    ids = [os.stat(f"/run/netns/{n}") for n in names]
    proc.kill()  # SIGKILL: no atexit, no handler; the servers die by PR_SET_PDEATHSIG
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 5
    while pids_in_namespaces((st.st_dev, st.st_ino) for st in ids) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_in_namespaces([(st.st_dev, st.st_ino) for st in ids]) == []
    assert sorted(cleanup_stale(cli_prefix)) == sorted(names)
    assert all(os.path.exists(f"/run/netns/{name}") for name in live.ns.values())  # kept


@needs_root
def test_cli_check_passes() -> None:
    result = subprocess.run([sys.executable, "-m", "lab", "check", "--prefix", "bltchk"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line == "PASS host network unchanged" for line in lines)
    assert not [line for line in lines if line.startswith("FAIL")]
