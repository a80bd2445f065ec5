"""Guard rails that add up: the blocked share of public space, and holds that never delay an
unblock.

The feeds are signed and served by lab/httpserver.py on 127.0.0.1; the agent runs through its
command line with no backend, so what is enforced is state_dir/applied.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.coverage import PUBLIC_SIZE, blocklist_share, contributors
from agent.guards import SPECIAL_V4
from agent.indicators import Indicator
from agent.merge import Blocklist, merge
from agent.netrange import AF_INET, AF_INET6, SpanSet, span, subtract, to_cidrs
from agent.plan import deescalation, make_plan
from lab.httpserver import HttpServer

Cli = Callable[..., Any]


def covering_slash8s() -> list[str]:
    """The audit's 286 prefixes: each /8 or longer, none touching a special range, together
    100 % of public IPv4 (every public /8, and the fewest prefixes filling the others)."""
    special = SpanSet.of([cidr for cidr, _ in SPECIAL_V4], AF_INET)
    out: list[str] = []
    for first in range(256):
        whole = span(f"{first}.0.0.0/8", AF_INET)
        out += to_cidrs(subtract([whole], [(lo, hi) for lo, hi in zip(
            special.starts, special.ends, strict=True)]), AF_INET)
    return out


def test_the_286_prefixes_of_the_audit_cover_all_of_public_ipv4() -> None:
    nets = covering_slash8s()
    assert len(nets) == 286 and all(int(n.split("/")[1]) >= 8 for n in nets)
    special = SpanSet.of([cidr for cidr, _ in SPECIAL_V4], AF_INET)
    assert not any(special.touches(*span(n, AF_INET)) for n in nets)
    share = blocklist_share(merge([[Indicator("ipv4", n) for n in nets]]))
    assert round(share.v4, 6) == 1.0 and share.v6 == 0.0


def test_share_counts_public_space_only() -> None:
    bl = Blocklist(v4=frozenset({"8.8.8.8"}), v4_nets=frozenset({"10.0.0.0/8", "1.0.0.0/8"}),
                   v6_nets=frozenset({"2a00::/12", "fc00::/7"}))
    share = blocklist_share(bl)
    assert share.v4 == (2**24 + 1) / PUBLIC_SIZE[AF_INET]  # 10/8 is not public
    assert share.v6 == 2**116 / PUBLIC_SIZE[AF_INET6]  # fc00::/7 is not in 2000::/3


def test_plan_over_the_share_is_held_first_sync_too_and_names_who() -> None:
    nets = covering_slash8s()
    inds = [Indicator("ipv4", n) for n in nets]
    bl = merge([inds])
    plan = make_plan(None, bl, max_change=0.5, max_address_share=0.02)
    assert plan.first and plan.share_over == [("IPv4", plan.share.v4)]
    lines = contributors([("evil", inds), ("ok", [Indicator("ipv4", "91.219.236.0/24")])],
                         plan.share, 0.02)
    held = plan._replace(contributors=tuple(lines)).held
    assert held is not None and "more than guards.max_address_share (2.00%)" in held
    assert "evil 100.00%" in held and "(evil, 0.45%)" in held
    # forced once, the same share is not held again; growing above it is
    assert make_plan(bl, bl, max_change=0.5, max_address_share=0.02).held is None


def test_deescalation_keeps_only_what_both_block() -> None:
    before = Blocklist(v4=frozenset({"185.220.101.1", "185.220.101.2"}),
                       v4_nets=frozenset({"91.219.236.0/24"}),
                       names=frozenset({"evil.example", "gone.example"}),
                       wild=frozenset({"phish.example", "narrowed.example"}))
    after = merge([[Indicator("ipv4", "185.220.101.1"), Indicator("ipv4", "91.219.236.0/24"),
                    Indicator("ipv4", "45.155.205.0/24"),  # an addition: not taken
                    Indicator("domain", "evil.example"), Indicator("domain", "new.example"),
                    Indicator("domain", "phish.example", subdomains=True),
                    Indicator("domain", "narrowed.example")]],
                  allow=[Indicator("ipv4", "91.219.236.7")])
    partial = deescalation(before, after)
    assert partial.v4 == {"185.220.101.1", "91.219.236.6"}  # .6 is what carving .7 leaves
    assert "91.219.236.7" not in partial.v4 and partial.allow_ips == {"91.219.236.7"}
    assert "91.219.236.0/30" in partial.v4_nets and "45.155.205.0/24" not in partial.v4_nets
    assert partial.names == {"evil.example", "narrowed.example"}
    assert partial.wild == {"phish.example"}


# --- through the command line ---------------------------------------------------------------

BASE = "".join(f"185.220.101.{i}\n" for i in range(1, 21)) + "evil-c2.com\n"


def _setup(publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
           cli: Cli, **guards: Any) -> Path:
    publish("cert", BASE, serial=1)
    path = write_config({"name": "cert", "url": server.url("/cert/manifest.json")},
                        guards={"max_change": 0.5, **guards})
    assert cli("sync").code == 0
    return path


def test_feed_covering_public_ipv4_is_held_with_contributors(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Cli, enforced: Callable[[], dict[str, list[str]]]) -> None:
    _setup(publish, server, write_config, cli)
    publish("cert", BASE + "\n".join(covering_slash8s()) + "\n", serial=2)
    result = cli("sync", "--json")
    assert result.code == 1 and result.json["result"] == "held"
    held = result.json["plan"]["held"]
    assert "of public IPv4 space, more than guards.max_address_share (2.00%)" in held
    assert "cert 100.00%" in held
    assert enforced()["v4_nets"] == []
    assert "HELD" in cli("status").out
    forced = cli("sync", "--force")
    assert forced.code == 0, forced.out
    assert len(enforced()["v4_nets"]) > 100


def test_local_allow_applies_while_the_plan_is_held(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Cli, enforced: Callable[[], dict[str, list[str]]], state_dir: Path) -> None:
    _setup(publish, server, write_config, cli, max_change=0.1)
    publish("cert", BASE + "".join(f"45.155.205.{i}\n" for i in range(1, 30)), serial=2)
    assert cli("sync").code == 1  # +29 of 21: held
    assert cli("allow", "185.220.101.3", "--reason", "false positive").code in (0, 1)
    result = cli("sync", "--json")
    assert result.json["result"] == "held"
    assert result.json["deescalated"]["removed"] == 1
    now = enforced()
    assert "185.220.101.3" not in now["v4"] and "45.155.205.1" not in now["v4"]
    assert now["allow_ips"] == ["185.220.101.3"]
    text = cli("sync")
    assert "applied at once" not in text.out  # nothing left to de-escalate: no second apply
    # the feed itself removing a few entries (under max_change) also applies at once
    publish("cert", BASE.replace("185.220.101.9\n", "")
            + "".join(f"45.155.205.{i}\n" for i in range(1, 30)), serial=3)
    assert cli("sync").code == 1
    assert "185.220.101.9" not in enforced()["v4"]
    record = json.loads((state_dir / "feeds/cert/current/record.json").read_text())
    assert record["serial"] == 1  # the held feed data is not recorded


def test_an_emptied_feed_stays_held_but_allows_still_apply(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Cli, enforced: Callable[[], dict[str, list[str]]]) -> None:
    _setup(publish, server, write_config, cli)
    publish("cert", "185.220.101.1\n", serial=2)  # -20 of 21: far over max_change
    cli("allow", "185.220.101.5", "--reason", "false positive")
    result = cli("sync", "--json")
    assert result.json["result"] == "held"
    now = enforced()
    assert len(now["v4"]) == 19 and "185.220.101.5" not in now["v4"]
    assert now["names"] == ["evil-c2.com"]


def test_a_feed_over_its_max_indicators_is_refused_with_a_clear_reason(
        publish: Callable[..., Any], server: HttpServer, write_config: Callable[..., Path],
        cli: Cli, enforced: Callable[[], dict[str, list[str]]]) -> None:
    publish("cert", BASE, serial=1)
    write_config({"name": "cert", "url": server.url("/cert/manifest.json"),
                  "max_indicators": 10})
    result = cli("sync", "--json")
    assert result.code == 1
    error = result.json["feeds"][0]["error"]
    assert error["reason"] == "too-many-indicators"
    assert "21 entries by indicators.txt, more than this feed's max_indicators (10)" in (
        error["message"])
    assert "raise max_indicators" in error["hint"]
    assert enforced()["v4"] == []
