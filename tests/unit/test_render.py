"""Renderers: the nft script loads in a real kernel (inside a throwaway netns) and the RPZ zone
passes BIND's own checker; no value can inject text into either."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelView
from agent.config import DnsConfig, FirewallConfig
from agent.errors import AgentError, ApplyError
from agent.indicators import normalize
from agent.merge import Blocklist, merge
from agent.render import common
from agent.render.nft_blocklist import render_table
from agent.render.rpz import action_rdata, render_zone, rpz_ip_owner

FW = FirewallConfig(management=("10.10.99.0/24", "fd00:99::/64"))


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"blat-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def sample() -> Blocklist:
    values = ["198.51.100.7", "203.0.113.0/24", "2001:db8:bad::7", "2001:db8:beef::/48",
              "evil.example", "*.phish.example"]
    return merge([[normalize(v) for v in values]],
                 allow=[normalize("good.example"), normalize("*.corp.example"),
                        normalize("203.0.113.9")])


def set_elements(ns: str, table: str, name: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", table,
                          name], capture_output=True, text=True, check=True).stdout
    elems = json.loads(out)["nftables"][1]["set"].get("elem", [])
    found = set()
    for e in elems:
        if isinstance(e, dict) and "prefix" in e:
            found.add(f"{e['prefix']['addr']}/{e['prefix']['len']}")
        elif isinstance(e, dict) and "range" in e:
            found.add("-".join(e["range"]))
        else:
            found.add(str(e))
    return found


def test_nft_script_loads_and_replaces_the_table(netns: str) -> None:
    nft = Nft(["ip", "netns", "exec", netns, "nft"])
    bl = sample()
    nft.load(render_table(FW, bl))
    # carving the allowed 203.0.113.9 out of the /24 leaves 203.0.113.8 as a single address
    assert set_elements(netns, FW.table, "v4") == {"198.51.100.7", "203.0.113.8"}
    v4_nets = set_elements(netns, FW.table, "v4_nets")
    assert "203.0.113.9" not in str(v4_nets) and "203.0.113.0/29" in v4_nets  # carved allow
    assert set_elements(netns, FW.table, "v6") == {"2001:db8:bad::7"}
    assert set_elements(netns, FW.table, "mgmt_v4") == {"10.10.99.0/24"}
    # loading again replaces the table (no duplicate-element errors, no leftovers)
    smaller = merge([[normalize("198.51.100.8")]])
    nft.load(render_table(FW, smaller))
    assert set_elements(netns, FW.table, "v4") == {"198.51.100.8"}
    assert set_elements(netns, FW.table, "v4_nets") == set()


def test_nft_script_touches_no_other_table(netns: str) -> None:
    nft = Nft(["ip", "netns", "exec", netns, "nft"])
    nft.load("table inet filter {\n chain input { type filter hook input priority 0; }\n}\n")
    nft.load(render_table(FW, sample()))
    tables = nft.run("list", "tables")
    assert "table inet filter" in tables and f"table inet {FW.table}" in tables


def test_failed_transaction_keeps_previous_sets(netns: str) -> None:
    nft = Nft(["ip", "netns", "exec", netns, "nft"])
    nft.load(render_table(FW, sample()))
    broken = render_table(FW, merge([[normalize("198.51.100.99")]])) + "this is not nft\n"
    with pytest.raises(ApplyError) as err:
        nft.load(broken)
    assert err.value.reason == "nft-failed"
    assert set_elements(netns, FW.table, "v4") == {"198.51.100.7", "203.0.113.8"}


def test_hash_sets_are_declared_with_room_the_kernel_enforces(
        netns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "HASH_ROOM_MIN", 4)
    assert [common.hash_room(n) for n in (0, 3, 4, 6, 7, 100)] == [4, 4, 8, 8, 8, 128]
    nft = Nft(["ip", "netns", "exec", netns, "nft"])
    view = KernelView(nft, FW.table)
    seven = Blocklist(v4=frozenset(f"198.51.100.{i}" for i in range(1, 8)))
    nft.load(render_table(FW, seven))
    rooms = KernelView.rooms(view.skeleton())
    assert (rooms["v4"], rooms["v6"], rooms["v4_nets"]) == (8, 4, 0)
    more = ", ".join(f"198.51.100.{i}" for i in range(8, 18))  # 17 elements in room for 8
    with pytest.raises(ApplyError):
        nft.load(f"add element inet {FW.table} v4 {{ {more} }}\n")
    assert len(set_elements(netns, FW.table, "v4")) == 7
    # the kernel's rooms, as a boot file must declare them (0: declared without a size)
    nft.load(render_table(FW, seven, rooms={"v4": 0, "v6": 64}))
    rooms = KernelView.rooms(view.skeleton())
    assert (rooms["v4"], rooms["v6"]) == (0, 64)
    nft.load(f"add element inet {FW.table} v4 {{ {more} }}\n")  # no size: no limit
    assert len(set_elements(netns, FW.table, "v4")) == 17


def test_rendered_values_are_rechecked() -> None:
    evil = Blocklist(v4=frozenset({"1.2.3.4 } ; flush ruleset ; add element x y { 1"}))
    with pytest.raises(AgentError, match="unsafe"):
        render_table(FW, evil)
    with pytest.raises(AgentError, match="unsafe"):
        render_zone(DnsConfig(), Blocklist(names=frozenset({"evil.example\n@ NS attacker."})), 1)
    with pytest.raises(AgentError, match="unsafe"):
        render_zone(DnsConfig(), Blocklist(names=frozenset({"x" * 64 + ".example"})), 1)


@pytest.mark.parametrize(
    ("value", "owner"),
    [
        ("1.2.3.4", "32.4.3.2.1.rpz-ip"),
        ("198.51.100.0/24", "24.0.100.51.198.rpz-ip"),
        ("2001:db8::1", "128.1.zz.db8.2001.rpz-ip"),
        ("2001:db8::/32", "32.zz.db8.2001.rpz-ip"),
        ("2001:db8:0:0:1::1", "128.1.0.0.1.zz.db8.2001.rpz-ip"),  # first run of zeros
        ("2001:db8:1:2:3:4:5:6", "128.6.5.4.3.2.1.db8.2001.rpz-ip"),
    ],
)
def test_rpz_ip_owner(value: str, owner: str) -> None:
    assert rpz_ip_owner(value) == owner


def test_actions() -> None:
    assert action_rdata("nxdomain") == "CNAME ."
    assert action_rdata("nodata") == "CNAME *."
    assert action_rdata("drop") == "CNAME rpz-drop."
    assert action_rdata("redirect:192.0.2.80") == "A 192.0.2.80"
    assert action_rdata("redirect:2001:db8::80") == "AAAA 2001:db8::80"
    assert action_rdata("redirect:blocked.chu-example.fr") == "CNAME blocked.chu-example.fr."


def test_zone_content_and_named_checkzone(tmp_path: Path) -> None:
    text = render_zone(DnsConfig(zone="rpz.test.", ttl=60), sample(), 2026112301)
    lines = set(text.splitlines())
    for expected in ("evil.example CNAME .", "phish.example CNAME .", "*.phish.example CNAME .",
                     "32.7.100.51.198.rpz-ip CNAME .", "128.7.zz.bad.db8.2001.rpz-ip CNAME .",
                     "good.example CNAME rpz-passthru.", "*.corp.example CNAME rpz-passthru.",
                     "32.9.113.0.203.rpz-ip CNAME rpz-passthru."):
        assert expected in lines, expected
    assert any(line.startswith("@ SOA") and " 2026112301 " in line for line in lines)
    zone = tmp_path / "rpz.zone"
    zone.write_text(text)
    check = subprocess.run(["named-checkzone", "rpz.test", str(zone)], capture_output=True,
                           text=True, env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert check.returncode == 0, check.stdout + check.stderr
    assert "loaded serial 2026112301" in check.stdout
