"""The one executor of nft commands (like firewalld's): every kernel change goes through here.

A script is written to a temp file and loaded with `nft -f`, which the kernel applies as one
transaction: all of it or none of it. The command prefix is injectable so the tests and the
benchmarks can run the very same code inside a network namespace (`ip netns exec NS nft`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from agent.util.command import Failure, run

_FAILURE = Failure(
    family="nft",
    missing_hint="install the nftables package (apt-get install nftables)",
    timeout_hint="the previous ruleset stays in place; check the system load",
    failed_hint="the kernel refused the whole transaction, so the previous ruleset is still "
    "in place; the script is kept for inspection (see the log)",
    output_sep="\n    ",  # nft points at the culprit with ^^^ under it: keep the lines
)


class Nft:
    def __init__(self, command: Sequence[str] = ("nft",), timeout: float = 600) -> None:
        self.command = list(command)
        self.timeout = timeout

    def run(self, *args: str, input_text: str | None = None) -> str:
        """nft's stdout, or ApplyError (nft-missing, nft-timeout, nft-failed)."""
        return run([*self.command, *args], timeout=self.timeout, failure=_FAILURE,
                   input_text=input_text, shown=f"nft {' '.join(args)}")

    def load(self, script: str, *, check_only: bool = False) -> None:
        """Apply (or with check_only, only validate) one script as one transaction."""
        with tempfile.NamedTemporaryFile("w", prefix="blocklist-agent-", suffix=".nft") as tmp:
            tmp.write(script)
            tmp.flush()
            self.run(*(["-c"] if check_only else []), "-f", tmp.name)
