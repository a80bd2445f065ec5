"""The one executor of nft commands (like firewalld's): every kernel change goes through here.

A script is given to `nft -f -` on its standard input (a file in memory, agent.util.command),
which the kernel applies as one transaction: all of it or none of it. Nothing is written to
/tmp (a crash left a script there each time; a 30 MB table over months fills a small disk).
The command prefix is injectable so the tests and the benchmarks can run the very same code
inside a network namespace (`ip netns exec NS nft`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.util.command import NFT_TIMEOUT, Failure, run

_FAILURE = Failure(
    family="nft",
    missing_hint="install the nftables package (apt-get install nftables)",
    timeout_hint="the previous ruleset stays in place; check the system load",
    failed_hint="the kernel refused the whole transaction, so the previous ruleset is still "
    "in place; run `blocklist-agent sync --dry-run --render-to DIR` and `nft -c -f "
    "DIR/ruleset.nft` to see the script",
    output_sep="\n    ",  # nft points at the culprit with ^^^ under it: keep the lines
)


class Nft:
    def __init__(self, command: Sequence[str] = ("nft",), timeout: float = NFT_TIMEOUT) -> None:
        self.command = list(command)
        self.timeout = timeout

    def run(self, *args: str, input_text: str | None = None) -> str:
        """nft's stdout, or ApplyError (nft-missing, nft-timeout, nft-failed)."""
        return run([*self.command, *args], timeout=self.timeout, failure=_FAILURE,
                   input_text=input_text, shown=f"nft {' '.join(args)}")

    def load(self, script: str, *, check_only: bool = False) -> None:
        """Apply (or with check_only, only validate) one script as one transaction."""
        self.run(*(["-c"] if check_only else []), "-f", "-", input_text=script)

    def check_file(self, path: Path) -> None:
        """`nft -c -f PATH`: would this file load (a boot file, before it replaces the old)?"""
        self.run("-c", "-f", str(path))
