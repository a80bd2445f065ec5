"""The apply edge: every enforcement point (nftables, a resolver) is a Backend.

Like certbot's plugins: a small ABC, one implementation per target, chosen by name from the
config. `apply` either makes the whole change or raises ApplyError having changed nothing that
matters (the previous enforcement stays in place).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from agent.config import Config
from agent.merge import Blocklist
from agent.plan import Plan
from agent.state import StateStore


@dataclass(frozen=True)
class ApplyContext:
    config: Config
    store: StateStore
    rpz_serial: int


class Backend(ABC):
    name: str = "backend"

    @abstractmethod
    def apply(self, plan: Plan, blocklist: Blocklist, ctx: ApplyContext) -> str:
        """Enforce `blocklist` (described against the last applied state by `plan`).

        Returns one line saying what was done (for the log, the plan printout and status).
        """
