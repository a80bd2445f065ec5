"""isolate / restore: the kill switch, for on-call staff at 3 a.m.

It never waits for a sync or needs the daemon: one small nft transaction on the isolation sets
(plus creating the table's isolation part if the table is missing), then the record, the audit
trail (journal with fields and history.jsonl), `enforced.nft` and `break-glass.nft` for the boot
path and for when Python is broken.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from agent import isolation, killswitch
from agent.cli import EXIT_FAIL, EXIT_OK, Output, load_config, operator
from agent.config import Config
from agent.daemon.notify import Journal
from agent.errors import AgentError, UsageError
from agent.indicators import InvalidValue, normalize_ip
from agent.isolation import IsolationState, Quarantine
from agent.state import StateStore

log = logging.getLogger(__name__)
JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journal() -> Journal:
    """The audit goes to the journal even when the command runs on a terminal."""
    if os.path.exists(JOURNAL_SOCKET):
        try:
            from systemd import journal as sd_journal
        except ImportError:
            return Journal()
        return Journal(sd_journal.send)
    return Journal()


def _fmt(ts: int | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _confirm(question: str, out: Output, assume_yes: bool) -> bool:
    if assume_yes or not sys.stdin.isatty() or out.json:
        return True
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes", "o", "oui")


def _allow_addresses(config: Config, previous: IsolationState
                     ) -> tuple[tuple[str, ...], dict[str, list[str]], list[str]]:
    addrs, names = isolation.split_allow(config.isolation.allow)
    if config.isolation.allow_feeds:
        for feed in config.feeds:
            for url in (feed.url, *feed.mirrors):
                host = urlsplit(url).hostname
                if host:
                    try:
                        addrs.append(normalize_ip(host)[1])
                    except InvalidValue:
                        names.append(host)
    resolved, failed = isolation.resolve(names, previous.resolved)
    for values in resolved.values():
        addrs.extend(values)
    return tuple(dict.fromkeys(addrs)), resolved, failed


def _require_nftables(config: Config) -> None:
    if config.firewall.backend != "nftables":
        raise UsageError("isolation needs firewall.backend: nftables",
                         hint="set firewall.backend: nftables and wan_interfaces in the config")
    if not config.firewall.wan_interfaces:
        raise UsageError("isolation needs firewall.wan_interfaces (the interfaces to the "
                         "internet)", hint="set firewall.wan_interfaces, e.g. [wan0]")


def cmd_isolate(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    _require_nftables(config)
    store = StateStore(config.state_dir)
    now = isolation.now()
    previous = isolation.load(store).live(now)
    deadline = now + args.duration if args.duration else None
    who = operator()
    peers = list(args.peer or [])
    for name in peers:
        if config.isolation.peer(name) is None:
            known = ", ".join(n for n, _ in config.isolation.peers) or "none configured"
            raise UsageError(f"unknown peer {name!r} (isolation.peers: {known})")
    scope = f"peer(s) {', '.join(peers)}" if peers else "the whole gateway from the internet"
    if not _confirm(f"Isolate {scope}?", out, args.yes):
        print("nothing done", file=sys.stderr)
        return EXIT_FAIL
    allow, resolved, failed = _allow_addresses(config, previous)
    if peers:
        kept = [p for p in previous.peers if p.name not in peers]
        new = [Quarantine(n, config.isolation.peer(n) or (), now, who, args.reason, deadline)
               for n in peers]
        state = replace(previous, peers=tuple(kept + new), allow=allow, resolved=resolved,
                        unresolved=tuple(failed))
    else:
        state = replace(previous, active=True, since=now, by=who, reason=args.reason,
                        deadline=deadline, allow=allow, resolved=resolved,
                        unresolved=tuple(failed))
    killswitch.enforce(config, store, state, now)
    event = {"event": "isolate", "by": who, "reason": args.reason, "deadline": deadline,
             "peers": peers or None, "allow": list(allow)}
    store.append_history(event)
    journal().event(logging.WARNING, f"isolation: {scope} cut by {who}: {args.reason}",
                    action="isolate", by=who, reason=args.reason, peer=",".join(peers) or None,
                    deadline=_fmt(deadline) if deadline else None)
    doc = describe(config, state, now)
    out.emit(doc, lambda: isolation_text(doc))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    _require_nftables(config)
    store = StateStore(config.state_dir)
    now = isolation.now()
    previous = isolation.load(store).live(now)
    who = operator()
    peers = list(args.peer or [])
    if peers:
        missing = [n for n in peers if n not in {p.name for p in previous.peers}]
        if missing:
            raise UsageError(f"peer(s) not quarantined: {', '.join(missing)}")
        state = replace(previous, peers=tuple(p for p in previous.peers if p.name not in peers))
        scope = f"peer(s) {', '.join(peers)}"
    else:
        state = replace(previous, active=False, deadline=None)
        scope = "internet access"
    killswitch.enforce(config, store, state, now)
    store.append_history({"event": "restore", "by": who, "reason": args.reason,
                          "peers": peers or None})
    journal().event(logging.WARNING, f"isolation: {scope} restored by {who}: {args.reason}",
                    action="restore", by=who, reason=args.reason, peer=",".join(peers) or None)
    doc = describe(config, state, now)
    out.emit(doc, lambda: isolation_text(doc))
    return EXIT_OK


def describe(config: Config, state: IsolationState, now: int) -> dict[str, Any]:
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
    red, reset = ("\033[1;31m", "\033[0m") if color else ("", "")
    lines = []
    if doc["active"]:
        lines.append(f"{red}ISOLATED since {_fmt(doc['since'])} by {doc['by']}: "
                     f"{doc['reason']}{reset}")
        lines.append(f"  cut: all traffic through {', '.join(doc['wan_interfaces'])} "
                     "(forwarded and from the gateway), established connections included")
        until = (f"{_fmt(doc['deadline'])} (lifted automatically)" if doc["deadline"]
                 else "`blocklist-agent restore --reason ...`")
        lines.append(f"  until: {until}")
    else:
        lines.append("not isolated: internet access is open")
    for p in doc["peers"]:
        until = f", until {_fmt(p['deadline'])}" if p["deadline"] else ""
        lines.append(f"{red}QUARANTINED peer {p['name']} ({', '.join(p['cidrs'])}) since "
                     f"{_fmt(p['since'])} by {p['by']}: {p['reason']}{until}{reset}")
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


def isolation_status(config: Config, store: StateStore, now: int) -> dict[str, Any]:
    """For `status`: the recorded state, with deadlines that passed applied and recorded."""
    try:
        state = killswitch.reconcile(config, store, now)
    except AgentError:  # not root, or nft missing: show the record as it is
        state = isolation.load(store).live(now)
    return describe(config, state, now)
