"""What `status`, `isolate` and `restore` show of the kill switch: what the kernel holds, with the
record's who and why, as a `--json` document and as text for an operator.

The kernel is the truth: "ISOLATED" is printed only for WAN interfaces the kernel's `iso_wan`
holds, and the time left is its element timeout. Where the record and the kernel disagree (an
isolation removed by someone, one the agent did not record, names that changed in the
configuration) it says so first. Pure: the caller reads the record, the kernel and the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.config import Config
from agent.isolation.intent import KernelSets, drift
from agent.isolation.model import BREAK_GLASS, IsolationState, Verdict
from agent.isolation.preflight import Preflight
from agent.util.timefmt import human_utc


def _kernel_doc(kernel: KernelSets | None) -> dict[str, Any] | None:
    if kernel is None:
        return None
    return {"table_present": kernel.table_present, "wan": dict(kernel.wan),
            "peers": dict(kernel.peers), "allow": list(kernel.allow)}


def disagreement(config: Config, verdict: Verdict, kernel: KernelSets | None) -> str | None:
    """Where the kernel does not do what the record and the configuration say, or None."""
    if kernel is None:
        return None
    state = verdict.state
    if verdict.removed:
        who = f" since {human_utc(state.since)} by {state.by}" if state.since else ""
        where = "the table is ABSENT" if not kernel.table_present else "iso_wan is empty"
        return (f"isolation is recorded{who} but the kernel does NOT cut the internet ({where}):"
                " it was removed outside the agent before its time")
    why = drift(config, state, kernel)
    return None if why is None else f"the kernel's isolation differs from the intent: {why}"


def describe(config: Config, verdict: Verdict, now: int, kernel: KernelSets | None = None
             ) -> dict[str, Any]:
    """The `--json` document (its keys are what runbooks read): fields of a lifted isolation
    are null, expired quarantines left out. `kernel` None: it could not be read, the record
    is shown as recorded (`source: record`)."""
    state = verdict.state
    active = bool(kernel.wan) if kernel is not None else state.active
    shown = state.active and active
    left = None if not shown or state.deadline is None else max(state.deadline - now, 0)
    return {
        "active": active, "since": state.since if shown else None,
        "by": (state.by if shown else BREAK_GLASS if active else None),
        "reason": state.reason if shown else None,
        "deadline": state.deadline if shown else None, "left": left,
        "cut": sorted(kernel.wan) if kernel is not None else (
            list(config.firewall.wan_interfaces) if state.active else []),
        "source": "record" if kernel is None else "kernel",
        "kernel": _kernel_doc(kernel),
        "lifted_by": "deadline" if verdict.lifted and not active else None,
        "disagreement": disagreement(config, verdict, kernel),
        "earlier": [dict(e) for e in state.earlier] if shown else [],
        "wan_interfaces": list(config.firewall.wan_interfaces),
        "management": list(config.firewall.management),
        "allow": list(state.allow), "resolved": state.resolved,
        "unresolved": list(state.unresolved),
        "peers": [{"name": p.name, "cidrs": list(p.cidrs), "since": p.since, "by": p.by,
                   "reason": p.reason, "deadline": p.deadline} for p in state.peers],
    }


def _when(stamp: int | None) -> str:
    return human_utc(stamp) if stamp else "(unknown: not recorded by the agent)"


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def isolation_text(doc: dict[str, Any], color: bool = False) -> str:
    """`describe`'s document for the on-call reader: what is cut, until when, what stays open
    (and which allowlisted names did not resolve, so it is known before a service is missed)."""
    red, reset = ("\033[1;31m", "\033[0m") if color else ("", "")
    lines = []
    if doc.get("disagreement"):
        lines.append(f"{red}WARNING: {doc['disagreement']}{reset}")
    if doc["active"]:
        lines.append(f"{red}ISOLATED since {_when(doc['since'])} by {doc['by']}: "
                     f"{doc['reason'] or 'no reason recorded'}{reset}")
        verified = "" if doc.get("source") == "kernel" else " (as recorded: kernel not read)"
        lines.append(f"  cut: all traffic through {', '.join(doc['cut'])} "
                     f"(forwarded and from the gateway), established connections included"
                     f"{verified}")
        if doc["deadline"]:
            until = (f"{human_utc(doc['deadline'])} (in {_minutes(doc['left'] or 0)}: the "
                     "kernel lifts it, daemon or not)")
        else:
            until = "`blocklist-agent restore --reason ...`"
        lines.append(f"  until: {until}")
        for e in doc.get("earlier", []):
            lines.append(f"  earlier: isolated since {_when(e.get('since'))} by {e.get('by')}: "
                         f"{e.get('reason')}")
    elif doc.get("lifted_by") == "deadline":
        lines.append("not isolated: internet access is open (the --for deadline passed: the "
                     "kernel lifted the isolation)")
    else:
        lines.append("not isolated: internet access is open")
    for p in doc["peers"]:
        until = f", until {human_utc(p['deadline'])}" if p["deadline"] else ""
        lines.append(f"{red}QUARANTINED peer {p['name']} ({', '.join(p['cidrs'])}) since "
                     f"{human_utc(p['since'])} by {p['by']}: {p['reason']}{until}{reset}")
    if doc["active"] or doc["peers"]:
        lines += stays_open(doc)
    return "\n".join(lines)


def stays_open(doc: dict[str, Any]) -> list[str]:
    """The lines saying what an isolation leaves open, with the addresses names stand for."""
    lines = ["  stays open: LAN-to-LAN routing; what management hosts start (from "
             f"{', '.join(doc['management']) or '(none configured)'}, on the LAN side only)"]
    named = {a for values in doc["resolved"].values() for a in values}
    plain = [a for a in doc["allow"] if a not in named]
    services = plain + [f"{n} ({', '.join(v)})" for n, v in doc["resolved"].items()]
    lines.append(f"  essential services open: {', '.join(services) or 'none'}")
    for name in doc["unresolved"]:
        fallback = name in doc["resolved"]
        lines.append(f"  WARNING: {name} did not resolve; it is "
                     + ("open with its last known addresses" if fallback
                        else "NOT reachable"))
    return lines


def plan_doc(config: Config, state: IsolationState, check: Preflight | None, kind: str | None,
             peers: Sequence[str], now: int) -> dict[str, Any]:
    """`isolate --dry-run`: the state the command would commit, what it would cut and what
    would stay open, and the preflight's verdict (nothing is changed)."""
    doc = describe(config, Verdict(state, False, False, False), now)
    doc.update(
        dry_run=True, source="dry-run", change=kind, peers_asked=list(peers),
        would_cut=[] if peers else list(config.firewall.wan_interfaces),
        would_quarantine=[{"name": p.name, "cidrs": list(p.cidrs)}
                          for p in state.peers if p.name in peers],
        preflight=None if check is None else {
            "ok": check.ok, "problems": check.problems(), "fix": None if check.ok else check.fix(),
            "interfaces": list(check.interfaces),
            "default_routes": [{"family": f, "dev": d} for f, d in check.routes]})
    return doc


def plan_text(doc: dict[str, Any]) -> str:
    lines = ["DRY RUN: nothing was changed."]
    pre = doc["preflight"]
    if doc["would_cut"]:
        until = (f"until {human_utc(doc['deadline'])}" if doc["deadline"]
                 else "until `blocklist-agent restore`")
        lines.append(f"would cut: all traffic through {', '.join(doc['would_cut'])} (forwarded "
                     f"and from the gateway), established connections included, {until}")
    for p in doc["would_quarantine"]:
        lines.append(f"would quarantine peer {p['name']} ({', '.join(p['cidrs'])}), both ways")
    if pre is not None and pre["ok"]:
        routes = ", ".join(f"{r['family']} via {r['dev']}" for r in pre["default_routes"])
        lines.append(f"  checked: every WAN interface exists; default routes: {routes or 'none'}")
    elif pre is not None:
        lines += [f"  REFUSED without --force: {problem}" for problem in pre["problems"]]
        lines.append(f"  what to do: {pre['fix']}")
    if doc["change"]:
        lines.append(f"  this would be {doc['change']} the running isolation")
    lines.append("would stay open:")
    lines += stays_open(doc)
    return "\n".join(lines)
