"""Debian's `systemctl restart nftables` with the daemon stopped (issue 11).

nftables.service runs `nft flush ruleset` (ExecStop) and `nft -f /etc/nftables.conf` (ExecStart,
and ExecReload), and Debian's nftables.conf itself starts with `flush ruleset`: every restart
or reload wipes the agent's table and an isolation in force. blocklist-agent-boot.service is
bound to it (PartOf=, ReloadPropagatedFrom=, After=, WantedBy=): systemd runs its command right
after. Here the commands of both units, read from the unit files as shipped, run in the lab's
gateway namespace in that order, with no daemon running; real probes from the LAN say what
is blocked and cut after each step.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.publish import minisign
from lab import HTTP_PORT, Lab
from tests.lab.daemon_lab import CONFIG, Gateway, Notifications

pytest_plugins = ["lab.pytest_plugin"]
pytestmark = pytest.mark.root

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
DEBIAN_NFTABLES_CONF = """#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
"""


def commands(unit: str, key: str) -> list[str]:
    """`key=` lines of a unit file as shipped (ExecStart=, ExecReload=, ExecStop=)."""
    path = Path("/lib/systemd/system/nftables.service") if unit == "nftables.service" \
        else UNITS / unit
    return [line.split("=", 1)[1] for line in path.read_text().splitlines()
            if line.startswith(f"{key}=")]


@dataclass
class Box:
    gw: Gateway
    conf: Path

    def systemd_runs(self, unit: str, key: str) -> None:
        """What systemd would run for `unit`'s `key`, with the test's paths."""
        for command in commands(unit, key):
            command = command.replace("/var/lib/blocklist-agent", str(self.gw.root / "state"))
            command = command.replace("/etc/nftables.conf", str(self.conf))
            self.gw.lab.run("gw", *shlex.split(command))


@pytest.fixture(scope="module")
def box(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    if not Path("/lib/systemd/system/nftables.service").exists():
        pytest.skip("Debian's nftables.service is not installed here")
    root = tmp_path_factory.mktemp("nftables-service")
    pub, key = minisign.generate_keypair()
    (root / "agent.yaml").write_text(CONFIG.format(
        metrics=root / "metrics.prom", feed=(root / "feed" / "manifest.json").as_uri(),
        key=pub.to_text()))
    notes = Notifications()
    gw = Gateway(lab, root, key, notes)
    gw.publish(lab.addr["c2"], lab.addr["c26"], "192.0.2.0/24", "2001:db8:bad::/48")
    conf = root / "nftables.conf"
    conf.write_text(DEBIAN_NFTABLES_CONF)
    try:
        yield Box(gw, conf)
    finally:
        notes.close()


def test_the_boot_unit_commands_are_the_ones_expected() -> None:
    assert commands("blocklist-agent-boot.service", "ExecStart") == [
        "/usr/sbin/nft -f /var/lib/blocklist-agent/enforced.nft"]
    assert commands("blocklist-agent-boot.service", "ExecReload") == \
        commands("blocklist-agent-boot.service", "ExecStart")


def test_restart_of_nftables_keeps_enforcement_and_isolation(box: Box) -> None:
    gw = box.gw
    gw.cli("sync")
    gw.cli("isolate", "--reason", "drill", "--yes")
    assert not gw.reach("site") and gw.present("v4", gw.lab.addr["c2"])
    # systemctl restart nftables: stop, start, then the boot unit (PartOf=, After=)
    started = time.monotonic()
    box.systemd_runs("nftables.service", "ExecStop")
    box.systemd_runs("nftables.service", "ExecStart")
    assert not gw.table_present()
    assert gw.reach("site"), "nftables.service alone lifted the isolation"
    box.systemd_runs("blocklist-agent-boot.service", "ExecStart")
    took = time.monotonic() - started
    print(f"\nsystemctl restart nftables, then the boot unit: enforcement back in "
          f"{took * 1000:.0f} ms (the commands only; systemd adds its own)")
    assert gw.iso_wan() == ["wan0"] and not gw.reach("site") and gw.reach("essential")
    assert gw.present("v4", gw.lab.addr["c2"]) and gw.present("v6_nets", "2001:db8:bad::/48")
    assert "table inet filter" in gw.nft("list", "tables").stdout  # nftables.conf's own


def test_reload_of_nftables_keeps_them_too(box: Box) -> None:
    gw = box.gw
    box.systemd_runs("nftables.service", "ExecReload")
    assert not gw.table_present()
    box.systemd_runs("blocklist-agent-boot.service", "ExecReload")  # ReloadPropagatedFrom=
    assert gw.iso_wan() == ["wan0"] and not gw.reach("site")
    status = gw.cli("status", check=False)
    assert "ISOLATED" in status.stdout


def test_after_restore_a_restart_brings_no_isolation_back(box: Box) -> None:
    gw = box.gw
    gw.cli("restore", "--reason", "drill over")
    box.systemd_runs("nftables.service", "ExecStop")
    box.systemd_runs("nftables.service", "ExecStart")
    box.systemd_runs("blocklist-agent-boot.service", "ExecStart")
    assert gw.iso_wan() == [] and gw.reach("site")
    assert gw.present("v4", gw.lab.addr["c2"])
    assert not gw.lab.tcp_probe("lan1", gw.lab.addr["c2"], HTTP_PORT, timeout=0.5)

