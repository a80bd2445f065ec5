"""What the kernel watcher reports: the kernel as it last saw it (for STATUS= and the metrics),
each repair it made (for the journal and the repairs metric), and their words for people.

Apart from the watcher's thread (agent.daemon.kernelwatch) so that what reads them
(agent.daemon.report) does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.backends.nft_view import KernelIsolation, SetElement
from agent.daemon.kernelwant import Fix, sample


@dataclass(frozen=True)
class Repair:
    kind: str        # table_deleted, ruleset_changed, element_deleted, element_added,
                     # isolation_lifted, events_lost
    found: str       # what was found, for people
    done: str        # what the writer did, or the error
    ok: bool
    seconds: float   # from detection to repaired


@dataclass(frozen=True)
class KernelFacts:
    """The table as the kernel holds it now (not as recorded)."""

    readable: bool = False               # False: nft could not be asked (or not yet)
    table_present: bool = False
    in_sync: bool | None = None          # the skeleton is as last applied; None: no record
    isolation: KernelIsolation = field(default_factory=lambda: KernelIsolation(False))
    intent_active: bool = False          # what isolation.json says (live)
    problem: str = ""                    # found and not repaired (yet)

    @property
    def known(self) -> bool:
        """False until the first look (nothing to say yet, rather than "unreadable")."""
        return self.readable or bool(self.problem)

    def key(self) -> tuple[object, ...]:
        iso = self.isolation
        return (self.readable, self.table_present, self.in_sync, tuple(sorted(iso.wan)),
                tuple(sorted(iso.peers)), self.intent_active, self.problem)


@dataclass(frozen=True)
class Look:
    """One look at the kernel: the facts, and the repair they call for (a full reload: kind
    and what was found; else element fixes by set). `agrees`: nothing to repair."""

    facts: KernelFacts
    full: tuple[str, str] | None = None
    fixes: dict[str, Fix] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return self.full is None and not self.fixes


def isolation_of(objects: list[dict[str, Any]] | None, found: dict[str, list[SetElement]]
                 ) -> KernelIsolation:
    """The kill switch from a skeleton listing and the small sets listed with it."""
    def values(*names: str) -> list[SetElement]:
        return [e for name in names for e in found.get(name, [])]

    return KernelIsolation(
        table_present=objects is not None,
        wan={e.value: e.expires for e in values("iso_wan")},
        peers={e.value: e.expires for e in values("peer_v4", "peer_v6")},
        allow=tuple(e.value for e in values("iso_allow_v4", "iso_allow_v6")),
        chains=objects is not None and {"iso_forward", "iso_output", "iso_input"} <= {
            o["chain"].get("name") for o in objects if "chain" in o})


def account(fix: Fix) -> str:
    parts = []
    if fix.readded:
        parts.append(f"{len(fix.readded)} element(s) deleted outside the agent: "
                     + sample(fix.readded))
    if fix.delete:
        parts.append(f"{len(fix.delete)} element(s) added outside the agent: "
                     + sample(fix.delete))
    return "; ".join(parts)


def isolation_line(kernel: KernelIsolation) -> str:
    cut = ", ".join(sorted(kernel.wan)) or "nothing"
    return (f"nftables: isolation sets rewritten from the intent (cut now: {cut}; "
            f"{len(kernel.peers)} peer prefix(es))")


def facts_with(facts: KernelFacts, problem: str) -> KernelFacts:
    return KernelFacts(facts.readable, facts.table_present, facts.in_sync, facts.isolation,
                       facts.intent_active, problem)
