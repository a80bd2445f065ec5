"""The one executor of nft commands (like firewalld's): every kernel change goes through here.

A script is written to a temp file and loaded with `nft -f`, which the kernel applies as one
transaction: all of it or none of it. The command prefix is injectable so the tests and the
benchmarks can run the very same code inside a network namespace (`ip netns exec NS nft`).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence

from agent.errors import ApplyError


class Nft:
    def __init__(self, command: Sequence[str] = ("nft",), timeout: float = 600) -> None:
        self.command = list(command)
        self.timeout = timeout

    def run(self, *args: str, input_text: str | None = None) -> str:
        try:
            proc = subprocess.run([*self.command, *args], input=input_text, capture_output=True,
                                  text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise ApplyError(f"cannot run {self.command[0]!r}",
                             hint="install the nftables package (apt-get install nftables)",
                             reason="nft-missing") from None
        except subprocess.TimeoutExpired:
            raise ApplyError(f"nft {' '.join(args)} did not finish in {self.timeout:.0f} s",
                             hint="the previous ruleset stays in place; check the system load",
                             reason="nft-timeout") from None
        if proc.returncode != 0:
            raise ApplyError(
                f"nft {' '.join(args)} failed: {_first_lines(proc.stderr)}",
                hint="the kernel refused the whole transaction, so the previous ruleset is still "
                "in place; the script is kept for inspection (see the log)",
                reason="nft-failed",
            )
        return proc.stdout

    def load(self, script: str, *, check_only: bool = False) -> None:
        """Apply (or with check_only, only validate) one script as one transaction."""
        with tempfile.NamedTemporaryFile("w", prefix="blocklist-agent-", suffix=".nft") as tmp:
            tmp.write(script)
            tmp.flush()
            self.run(*(["-c"] if check_only else []), "-f", tmp.name)


def _first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    shown = "\n    ".join(lines[:count])
    return shown + ("\n    ..." if len(lines) > count else "")
