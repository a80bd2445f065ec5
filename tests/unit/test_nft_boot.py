"""enforced.nft's check (agent.backends.nft_boot): the table without its elements, inline too."""

from __future__ import annotations

from pathlib import Path

from agent.backends.nft_boot import boot_table
from agent.config import FirewallConfig
from agent.indicators import normalize
from agent.merge import merge
from agent.render.nft_blocklist import render_table, rooms_for
from agent.state import StateStore

FW = FirewallConfig(management=("10.10.99.0/24",))


def test_an_inline_boot_table_is_checked_without_its_elements(tmp_path: Path) -> None:
    """A first sync writes the whole table inline: its elements are the ones the commit
    loaded, so `nft -c` checks the table around them (the sets, chains and rules), not a
    second load of a million elements."""
    blocklist = merge([[normalize("185.220.101.3"), normalize("91.92.109.0/24"),
                        normalize("evil.example")]])
    table, parts, check = boot_table(FW, blocklist, StateStore(tmp_path))
    assert parts == []
    assert "185.220.101.3" in table and "91.92.109.0/24" in table
    assert check is not None and "185.220.101.3" not in check and "91.92.109.0" not in check
    assert check == render_table(FW, type(blocklist)(), rooms=rooms_for(blocklist))
    # the same declarations: only the elements differ
    declared = [line for line in table.splitlines() if "size" in line or "chain" in line]
    assert declared and all(line in check.splitlines() for line in declared)
