"""What `status`, `isolate` and `restore` show of the kill switch: the live state as a `--json`
document and as text for an operator (pure: the caller reads the record and the clock)."""

from __future__ import annotations

from typing import Any

from agent.config import Config
from agent.isolation.model import IsolationState
from agent.util.timefmt import human_utc


def describe(config: Config, state: IsolationState, now: int) -> dict[str, Any]:
    """The `--json` document (its keys are what runbooks read): fields of a lifted isolation
    are null, expired quarantines left out."""
    live = state.live(now)
    return {
        "active": live.active, "since": live.since if live.active else None,
        "by": live.by if live.active else None, "reason": live.reason if live.active else None,
        "deadline": live.deadline if live.active else None,
        "wan_interfaces": list(config.firewall.wan_interfaces),
        "management": list(config.firewall.management),
        "allow": list(live.allow), "resolved": live.resolved,
        "unresolved": list(live.unresolved),
        "peers": [{"name": p.name, "cidrs": list(p.cidrs), "since": p.since, "by": p.by,
                   "reason": p.reason, "deadline": p.deadline} for p in live.peers],
    }


def isolation_text(doc: dict[str, Any], color: bool = False) -> str:
    """`describe`'s document for the on-call reader: what is cut, until when, what stays open
    (and which allowlisted names did not resolve, so it is known before a service is missed)."""
    red, reset = ("\033[1;31m", "\033[0m") if color else ("", "")
    lines = []
    if doc["active"]:
        lines.append(f"{red}ISOLATED since {human_utc(doc['since'])} by {doc['by']}: "
                     f"{doc['reason']}{reset}")
        lines.append(f"  cut: all traffic through {', '.join(doc['wan_interfaces'])} "
                     "(forwarded and from the gateway), established connections included")
        until = (f"{human_utc(doc['deadline'])} (lifted automatically)" if doc["deadline"]
                 else "`blocklist-agent restore --reason ...`")
        lines.append(f"  until: {until}")
    else:
        lines.append("not isolated: internet access is open")
    for p in doc["peers"]:
        until = f", until {human_utc(p['deadline'])}" if p["deadline"] else ""
        lines.append(f"{red}QUARANTINED peer {p['name']} ({', '.join(p['cidrs'])}) since "
                     f"{human_utc(p['since'])} by {p['by']}: {p['reason']}{until}{reset}")
    if doc["active"] or doc["peers"]:
        lines.append("  stays open: LAN-to-LAN routing; management "
                     f"{', '.join(doc['management']) or '(none configured)'}")
        named = {a for values in doc["resolved"].values() for a in values}
        plain = [a for a in doc["allow"] if a not in named]
        services = plain + [f"{n} ({', '.join(v)})" for n, v in doc["resolved"].items()]
        lines.append(f"  essential services open: {', '.join(services) or 'none'}")
        for name in doc["unresolved"]:
            fallback = name in doc["resolved"]
            lines.append(f"  WARNING: {name} did not resolve; it is "
                         + ("open with its last known addresses" if fallback
                            else "NOT reachable"))
    return "\n".join(lines)
