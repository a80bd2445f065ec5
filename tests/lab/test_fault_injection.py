"""Fault injection in the namespace lab (issue 12): real nft, a real Unbound, the real CLI and
daemon, and the faults a gateway meets in months unattended.

- kill -9 at every rename a sync makes (strace's syscall injection): the next sync is healthy
  and leaves nothing behind;
- each state file of the kernel side damaged three ways: healthy within two syncs, isolate and
  restore work whatever isolation.json holds; a truncated boot file is written again;
- a full state directory (a small tmpfs): the sync says what was and was not applied, `status`
  fails, `isolate` and `restore` still change the kernel, always send their journal line, try
  their history line and say which files did not persist;
- an immutable zone file (DNS fails after nftables applied): an `allow` still opens the address;
- a SIGSTOPped Unbound: the daemon's sync ends with an error within 90 s and the watchdog is fed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import HTTP_PORT, Lab
from lab.resolvers import Server, start_unbound

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

TABLE = "blocklist_agent"
CONFIG = """
state_dir: {root}/state
local_dir: {root}/local.d
feeds:
  - name: cert
    url: file://{www}/cert/manifest.json
    trusted_keys: ["{key}"]
firewall:
  backend: nftables
  lan_interfaces: [lan0, lan1]
  wan_interfaces: [wan0]
  management: [10.10.99.0/24]
guards:
  allow_special: [198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
  max_change: 1.0
dns:
  backend: unbound
  zonefile: {root}/zones/rpz.zone
  control: "{control}"
  resolver: 127.0.0.1
"""


@dataclass
class Gateway:
    lab: Lab
    root: Path
    unbound: Server

    @property
    def state(self) -> Path:
        return self.root / "state"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "agent", "-c", str(self.root / "agent.yaml"), *args]

    def cli(self, *args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        proc = self.lab.run("gw", *self.argv(*args), check=False, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def status(self) -> tuple[int, dict[str, Any]]:
        proc = self.cli("status", "--json", check=False)
        return proc.returncode, dict(json.loads(proc.stdout))

    def can(self, dst: str) -> bool:
        return self.lab.tcp_probe("lan1", self.lab.addr[dst], HTTP_PORT, timeout=0.7)

    def deny(self, *values: str) -> None:
        (self.root / "local.d" / "test.deny").write_text("".join(f"{v}\n" for v in values))

    def reset(self) -> None:
        """A gateway that never synced: no table, no state (the zone file stays)."""
        self.lab.run("gw", "nft", "delete", "table", "inet", TABLE, check=False)
        subprocess.run(["rm", "-rf", str(self.state)], check=True)
        self.deny()

    def leftovers(self) -> list[str]:
        """Temp files, stray links and generations: what a crash leaves. (Nothing goes to /tmp
        any more: nft reads its scripts on stdin; other clones' tests may still write there.)"""
        found = [str(p) for d in (self.state, self.root / "zones", self.root / "local.d")
                 for p in d.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(
                     ".current") or (p.name.startswith("gen-") and p.parent.name == "cert"
                                     and p.resolve() != (p.parent / "current").resolve())]
        return found


@pytest.fixture(scope="module")
def unbound(lab: Lab, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Server, Path]]:
    """One Unbound for the module, reading ROOT/zones/rpz.zone (ROOT: the gateway's files)."""
    root = tmp_path_factory.mktemp("faults")
    with start_unbound(lab, listen=[(lab.addr["gw_lan1"], 53), ("127.0.0.1", 53)],
                       upstream=(lab.addr["dns"], 53), rpz_zonefile=root / "zones" / "rpz.zone"
                       ) as server:
        yield server, root


@pytest.fixture
def gw(lab: Lab, unbound: tuple[Server, Path], publish: Callable[..., Any], www: Path,
       keypair: Any) -> Iterator[Gateway]:
    server, root = unbound
    (root / "local.d").mkdir(exist_ok=True)
    control = " ".join(server.control[4:])  # as on a gateway: the CLI runs inside ns gw
    (root / "agent.yaml").write_text(CONFIG.format(root=root, www=www, key=keypair[0].to_text(),
                                                   control=control))
    publish("cert", f"{lab.addr['c2']}\n")
    gateway = Gateway(lab, root, server)
    gateway.reset()
    yield gateway
    lab.run("gw", "nft", "delete", "table", "inet", TABLE, check=False)
    subprocess.run(["chattr", "-i", str(root / "zones" / "rpz.zone")], check=False)


# --- kill -9 at every write -------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_at_every_rename_then_a_healthy_sync_and_no_leftovers(gw: Gateway) -> None:
    killed_at = []
    for n in range(1, 60):
        gw.reset()
        gw.deny(gw.lab.addr["bad_prefix_host"])
        proc = gw.lab.run("gw", "strace", "-f", "--seccomp-bpf", "-o", "/dev/null", "-e",
                          f"inject=rename,renameat,renameat2:signal=KILL:when={n}",
                          *gw.argv("sync"), check=False, timeout=120)
        if proc.returncode in (0, 1):  # fewer than n renames: every write point was hit
            break
        assert proc.returncode in (-9, 137), proc.stderr
        killed_at.append(n)
        healed = gw.cli("sync", check=False)
        assert healed.returncode == 0, f"after kill -9 at rename {n}: {healed.stderr}"
        assert gw.leftovers() == [], f"after kill -9 at rename {n}"
        assert json.loads((gw.state / "status.json").read_text())["last_sync"]["result"] == "ok"
    print(f"killed at each of {len(killed_at)} renames; every next sync healthy, no leftovers")
    assert len(killed_at) >= 10, killed_at  # feed files, applied, status, nft records, zone
    code, doc = gw.status()
    assert code == 0, doc
    assert not gw.can("c2")


# --- damaged state files -----------------------------------------------------------------------

DAMAGE = {"empty": b"", "list": b"[]", "garbage": b"\x00\xff{not json"}
KERNEL_SIDE = ("nftables.json", "dns.json", "isolation.json", "enforced.nft", "isolation.nft",
               "break-glass.nft", "applied.json", "status.json")


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_kernel_side_state_damaged_heals_within_two_syncs(gw: Gateway, how: str) -> None:
    gw.deny(gw.lab.addr["bad_prefix_host"])
    gw.cli("sync")
    for name in KERNEL_SIDE:
        (gw.state / name).write_bytes(DAMAGE[how])
    gw.cli("sync", check=False)
    gw.cli("sync")
    code, doc = gw.status()
    assert code == 0, doc
    for boot in ("enforced.nft", "isolation.nft", "break-glass.nft"):
        gw.lab.run("gw", "nft", "-c", "-f", str(gw.state / boot))
    assert not gw.can("c2")
    if how != "list":
        return
    # the kill switch works whatever its record held
    gw.cli("isolate", "--reason", "drill", "--yes")
    assert not gw.can("site")
    gw.cli("restore", "--reason", "end of drill")
    assert gw.can("site")


@pytest.mark.parametrize("record", ["[]", '{"active": true, "since": 1, "peers": [{"name": "x"}]}',
                                    '{"active": "yes", "deadline": "soon"}'])
def test_isolate_and_restore_work_whatever_isolation_json_holds(gw: Gateway, record: str) -> None:
    gw.cli("sync")
    (gw.state / "isolation.json").write_text(record)
    gw.cli("isolate", "--reason", "drill", "--yes")
    assert not gw.can("site")
    gw.cli("restore", "--reason", "end of drill")
    assert gw.can("site")
    assert gw.status()[0] == 0


def test_a_truncated_boot_file_is_written_again_by_a_sync_that_changes_nothing(
        gw: Gateway) -> None:
    gw.cli("sync")
    enforced = gw.state / "enforced.nft"
    enforced.write_text(enforced.read_text()[:200])
    assert gw.lab.run("gw", "nft", "-c", "-f", str(enforced), check=False).returncode != 0
    proc = gw.cli("sync", "-v")
    assert "boot files rewritten (enforced.nft)" in proc.stdout
    gw.lab.run("gw", "nft", "-c", "-f", str(enforced))


# --- a full disk -------------------------------------------------------------------------------

def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _isolation_line(err: str, action: str) -> list[str]:
    """The journal's line of an isolate or restore: without a journal socket (the lab), a log
    line on stderr, shown with -v."""
    return [line for line in err.splitlines() if f"ACTION={action}" in line]


def test_a_full_state_disk_is_reported_and_isolate_still_cuts(gw: Gateway) -> None:
    gw.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(gw.state)], check=True)
    try:
        gw.cli("sync")
        # history.jsonl on its own page would take a line in spite of the full disk: gone, its
        # next line needs a new page, which the full disk refuses
        (gw.state / "history.jsonl").unlink(missing_ok=True)
        _fill(gw.state / "filler")
        site = gw.lab.addr["site"]
        gw.deny(site)
        proc = gw.cli("sync", "--json", check=False)
        assert proc.returncode == 1
        doc = json.loads(proc.stdout)
        assert doc["error"]["reason"] == "state-write", doc["error"]
        assert "NOT written" in json.dumps(doc["backends"]) or "could not be written" in \
            doc["error"]["message"]
        assert not gw.can("site"), "the kernel change stands although nothing was recorded"
        code, status = gw.status()
        assert code == 1 and status["state_dir"]["problem"], status["state_dir"]
        assert "CANNOT BE WRITTEN" in gw.cli("status", check=False).stdout
        # the kill switch cuts on a full disk, and says what did not persist (the disk filled
        # again first: what the failed sync freed when it replaced files is taken back)
        _fill(gw.state / "filler")
        iso = gw.cli("isolate", "--reason", "full-disk drill", "--yes", "-v", check=False)
        assert iso.returncode == 1
        assert "NOT written" in iso.stderr and "isolation.nft" in iso.stderr, iso.stderr
        assert '"wan0"' in gw.lab.run("gw", "nft", "list", "set", "inet", TABLE, "iso_wan").stdout
        assert "ISOLATED since" in iso.stdout and "cut: all traffic through wan0" in iso.stdout
        # the audit: the journal's line always, the history's line tried and said missing
        journal = _isolation_line(iso.stderr, "isolate")
        assert len(journal) == 1 and "full-disk drill" in journal[0], iso.stderr
        assert "NOT_PERSISTED=" in journal[0] and "history.jsonl" in journal[0], journal
        assert "history.jsonl (No space left on device)" in iso.stderr, iso.stderr
        assert not (gw.state / "history.jsonl").read_text(), "a line was written after all?"
        # the same in --json, for scripts: what the kernel holds, and which files did not persist
        _fill(gw.state / "filler")
        iso = gw.cli("isolate", "--reason", "full-disk drill", "--yes", "--json", "-v",
                     check=False)
        assert iso.returncode == 1
        doc = json.loads(iso.stdout)
        assert doc["active"] and doc["cut"] == ["wan0"], doc
        persisted = {entry.partition(" (")[0] for entry in doc["not_persisted"]}
        assert {"history.jsonl", "isolation.json", "isolation.nft"} <= persisted, doc
        assert len(_isolation_line(iso.stderr, "isolate")) == 1, iso.stderr
        # restore on a full disk: the same account
        _fill(gw.state / "filler")
        rest = gw.cli("restore", "--reason", "full-disk drill", "-v", check=False)
        assert rest.returncode == 1 and "history.jsonl (No space left" in rest.stderr, rest.stderr
        assert len(_isolation_line(rest.stderr, "restore")) == 1, rest.stderr
        assert '"wan0"' not in gw.lab.run("gw", "nft", "list", "set", "inet", TABLE,
                                          "iso_wan").stdout
        (gw.state / "filler").unlink()
        iso = gw.cli("isolate", "--reason", "full-disk drill", "--yes", "--json", "-v")
        assert json.loads(iso.stdout)["not_persisted"] == []  # now it persists
        assert len(_isolation_line(iso.stderr, "isolate")) == 1, iso.stderr
        assert "WARNING: the kernel holds" not in iso.stderr, iso.stderr
        assert "NOT_PERSISTED" not in iso.stderr, iso.stderr
        history = [json.loads(line) for line in
                   (gw.state / "history.jsonl").read_text().splitlines()]
        assert [h["event"] for h in history] == ["isolate"], history
        assert history[0]["reason"] == "full-disk drill"
        gw.cli("restore", "--reason", "end of drill")
        gw.cli("sync")
        assert gw.status()[0] == 0
    finally:
        subprocess.run(["umount", "-l", str(gw.state)], check=False)


# --- DNS fails after nftables applied -----------------------------------------------------------

def test_immutable_zone_file_then_allow_still_opens_the_address(gw: Gateway) -> None:
    gw.cli("sync")
    zone = gw.root / "zones" / "rpz.zone"
    subprocess.run(["chattr", "+i", str(zone)], check=True)
    try:
        gw.deny(gw.lab.addr["site"])
        proc = gw.cli("sync", "--json", check=False)
        doc = json.loads(proc.stdout)
        assert proc.returncode == 1
        backends = {b["name"]: b for b in doc["backends"]}
        assert backends["nftables"]["applied"] and not backends["unbound"]["applied"]
        assert not gw.can("site")
        gw.cli("allow", gw.lab.addr["site"], "--reason", "false positive")
        gw.cli("sync", check=False)  # DNS still fails; nftables applies the allow
        assert gw.can("site"), "an allow must open the address even while DNS fails"
    finally:
        subprocess.run(["chattr", "-i", str(zone)], check=True)
    gw.cli("sync")
    assert gw.status()[0] == 0
    gw.cli("unallow", gw.lab.addr["site"])


def _status(gw: Gateway) -> dict[str, Any]:
    return dict(json.loads((gw.state / "status.json").read_text()))


# --- a hung resolver ----------------------------------------------------------------------------

@pytest.mark.slow
def test_stopped_unbound_ends_the_daemons_sync_within_90s_and_the_watchdog_is_fed(
        gw: Gateway, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(0.5)
    pings: list[float] = []
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                data = listener.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in data:
                pings.append(time.monotonic())
            if "READY=1" in data:
                ready.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    watchdog_s = 20.0
    gw.cli("sync")
    first_attempt = _status(gw)["feeds"]["cert"]["last_attempt"]
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path),
           "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
    env.pop("WATCHDOG_PID", None)
    daemon = gw.lab.spawn("gw", *gw.argv("run"), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        assert ready.wait(60), "the daemon never became ready"
        for _ in range(60):  # the daemon's first refresh of the feed is done
            if _status(gw)["feeds"]["cert"].get("last_attempt") != first_attempt:
                break
            time.sleep(0.5)
        os.kill(gw.unbound.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        before = _status(gw)["last_sync"]["time"]
        gw.deny(gw.lab.addr["site"])
        while time.monotonic() - started < 120:
            last = _status(gw)["last_sync"]
            if last["time"] != before:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        assert last["result"] == "error", last
        assert elapsed < 90, f"the sync took {elapsed:.0f} s"
        assert not gw.can("site"), "nftables applied although the resolver hangs"
        window = [t for t in pings if started - 1 <= t <= started + elapsed] + [
            started + elapsed]
        gaps = [b - a for a, b in zip([started, *window], window, strict=False)]
        print(f"sync ended after {elapsed:.1f} s; largest watchdog gap {max(gaps):.1f} s")
        assert max(gaps) < watchdog_s / 2, gaps
    finally:
        os.kill(gw.unbound.proc.pid, signal.SIGCONT)
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)
        done.set()
        thread.join(timeout=5)
        listener.close()
        assert "Traceback" not in out, out
