"""Interface names follow agent.util.ifname, the rule the nft renderer applies too: a wildcard
such as `ppp+` must be refused by check-config, not at every apply and isolate afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.util.ifname import ifname_problem
from tests.config_helpers import line_of, problems_of

if TYPE_CHECKING:
    from tests.conftest import CliResult


@pytest.mark.parametrize(
    ("key", "name"),
    [("wan_interfaces", "ppp+"), ("wan_interfaces", "ppp*"), ("lan_interfaces", "eth+")],
)
def test_interface_wildcards_are_refused(key: str, name: str) -> None:
    text = f"firewall:\n  {key}: ['{name}']\n"
    assert problems_of(text, "agent.yaml") == [
        f"agent.yaml:{line_of(text, key)}: firewall.{key}[0]: not a valid network interface "
        f"name ('{name}') — {ifname_problem(name)}"
    ]


def test_check_config_refuses_ppp_wildcard(tmp_path: Path,
                                           cli: Callable[..., CliResult]) -> None:
    path = tmp_path / "agent.yaml"
    text = (f"state_dir: {tmp_path / 'state'}\n"
            "firewall:\n"
            "  backend: none\n"
            "  lan_interfaces: [lan0]\n"
            "  wan_interfaces: [wan0, ppp+]\n"
            "dns:\n"
            "  backend: none\n")
    path.write_text(text)
    result = cli("-c", path, "check-config")
    assert result.code == 2, result
    assert (f"{path}:{line_of(text, 'wan_interfaces')}: firewall.wan_interfaces[1]: not a valid "
            "network interface name ('ppp+') — 'ppp+' is a wildcard: list each interface by its "
            "name") in result.err
    as_json = cli("-c", path, "check-config", "--json")
    assert as_json.code == 2
    assert as_json.json["error"]["reason"] == "config"
