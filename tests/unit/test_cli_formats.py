"""The command line around the parsers (issue 13): keygen's errors, `parse` showing RPZ scopes
and actions, the per-feed prefix keys of the configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.config import loads
from agent.errors import ConfigError
from lab.httpserver import HttpServer

if TYPE_CHECKING:
    from tests.conftest import CliResult

Cli = Callable[..., "CliResult"]
DATA = Path(__file__).resolve().parents[1] / "data" / "formats"


def test_keygen_into_a_missing_directory_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("keygen", "--out", tmp_path / "missing-dir" / "name")
    assert result.code == 2
    assert "missing-dir does not exist" in result.err and "mkdir -p" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "missing-dir").exists()


def test_parse_shows_below_only_and_actions(cli: Cli, tmp_path: Path) -> None:
    zone = tmp_path / "zone.rpz"
    zone.write_text("*.only-subs.example CNAME .\nok.example CNAME rpz-passthru.\n"
                    "d.example CNAME rpz-drop.\n")
    text = cli("parse", "--format", "rpz", zone)
    assert text.code == 0
    assert text.out.splitlines() == ["domain\t*.only-subs.example (below only)",
                                     "domain\tok.example (passthru)", "domain\td.example (drop)"]
    doc = cli("parse", "--format", "rpz", zone, "--json").json
    assert doc["indicators"][0] == {"type": "domain", "value": "only-subs.example",
                                    "subdomains": True, "below_only": True, "ref": "1"}
    assert doc["indicators"][1]["action"] == "passthru"


FEED = """feeds:
  - name: dropv6
    url: https://www.spamhaus.org/drop/dropv6.txt
    format: spamhaus-drop
    signature: none
"""


def test_feed_min_prefix_keys_are_read() -> None:
    config = loads(FEED + "    min_prefix_v6: 29\n    min_prefix_v4: 12\n")
    assert (config.feeds[0].min_prefix_v4, config.feeds[0].min_prefix_v6) == (12, 29)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("    min_prefix_v6: 129\n", "feeds[0].min_prefix_v6: must be from 0 to 128 (129)"),
        ("    min_prefix_v4: 33\n", "feeds[0].min_prefix_v4: must be from 0 to 32 (33)"),
        ("    min_prefix_v4: '8'\n", "feeds[0].min_prefix_v4: expected a whole number"),
    ],
)
def test_feed_min_prefix_keys_are_validated_like_the_guards(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(FEED + line)
    assert message in str(caught.value)


def test_sync_applies_a_feeds_own_min_prefix_and_refuses_names_too_long(
    cli: Cli, publish: Callable[..., object], write_config: Callable[..., Path],
    server: HttpServer,
) -> None:
    too_long = ".".join(["a" * 63] * 3) + "." + "b" * 48 + ".example"  # 240 characters
    drop = (DATA / "spamhaus-dropv6-29.txt").read_text()
    publish("dropv6", drop, fmt="spamhaus-drop")
    publish("names", f"ok.example\n{too_long}\n")
    write_config({"name": "dropv6", "url": server.url("/dropv6/manifest.json"),
                  "min_prefix_v6": 29},
                 {"name": "names", "url": server.url("/names/manifest.json")},
                 guards={"max_change": 1.0})
    result = cli("sync", "--json")
    assert result.code == 0, result
    dropv6, names = result.json["feeds"]
    assert dropv6["accepted"] == 4 and dropv6["guard_rejects"] == {}
    assert names["accepted"] == 1 and names["guard_rejects"] == {"name-too-long": 1}
    why = cli("why", too_long, "--json").json
    assert why["blocked"] is False and why["guard"][0]["reason"] == "name-too-long"
    wide = cli("why", "2a06:5280::/29", "--json").json
    assert wide["blocked"] is True and wide["guard"] == []  # the feed's own minimum applies
