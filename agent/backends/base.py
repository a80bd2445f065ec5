"""The apply edge: every enforcement point (nftables, a resolver) is a Backend.

Like certbot's plugins: a small ABC, one implementation per target, chosen by name from the
config. `apply` either makes the whole change or raises ApplyError having changed nothing that
matters (the previous enforcement stays in place).

The class is also everything the daemon and `status` may ask of a backend: the metrics
(`counters`, `offenders`) and the live state (`status`) have defaults meaning "nothing to
report", so a backend implements only what its enforcement point can tell.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.config import Config
from agent.merge import Blocklist
from agent.plan import Plan
from agent.state import StateStore


@dataclass(frozen=True)
class ApplyContext:
    config: Config
    store: StateStore
    rpz_serial: int
    generation: int = 1  # this sync's number; applied.json holds the last fully applied one


class Backend(ABC):
    name: str = "backend"

    @abstractmethod
    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        """Enforce `blocklist` (described against the last applied state by `plan`).

        Returns one line saying what was done (for the log, the plan printout and status).
        """

    def unchanged(self, ctx: ApplyContext) -> str | None:
        """When the enforcement point holds exactly what was last recorded (ctx.generation, the
        applied record's), the note an apply of an empty plan would give, having checked
        without changing anything; None when it cannot tell: the sync then applies as usual
        (agent.shortcut)."""
        return None

    def counters(self, table: str) -> Mapping[str, int] | None:
        """Packets dropped so far per set of the firewall `table`, for the metrics textfile.

        None: this backend counts nothing. May raise (the kernel cannot be read): the caller
        leaves the series out, since metrics must never stop the enforcement.
        """
        return None

    def offenders(self, table: str) -> Sequence[Mapping[str, Any]] | None:
        """Internal hosts that recently tried a blocked destination ({"address", ...}), for the
        metrics textfile; None and exceptions as for `counters`."""
        return None

    def status(self, store: StateStore, config: Config) -> Mapping[str, Any] | None:
        """What `blocklist-agent status` shows of this enforcement point now (is it as applied?);
        None: nothing beyond what the state directory says."""
        return None
