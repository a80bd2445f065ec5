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
from typing import Any

from agent import isolation, lifelines
from agent.backends import killswitch
from agent.cli.common import EXIT_FAIL, EXIT_OK, Output, load_config, operator
from agent.config import Config
from agent.daemon.notify import Journal
from agent.errors import UsageError
from agent.isolation import model
from agent.isolation.model import IsolationState, Quarantine
from agent.isolation.resolve import allow_now
from agent.isolation.status import describe, isolation_text
from agent.state import StateStore
from agent.util.timefmt import human_utc

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


def _confirm(question: str, out: Output, assume_yes: bool) -> bool:
    if assume_yes or not sys.stdin.isatty() or out.json:
        return True
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes", "o", "oui")


def _require_nftables(config: Config) -> None:
    if config.firewall.backend != "nftables":
        raise UsageError("isolation needs firewall.backend: nftables",
                         hint="set firewall.backend: nftables and wan_interfaces in the config")
    if not config.firewall.wan_interfaces:
        raise UsageError("isolation needs firewall.wan_interfaces (the interfaces to the "
                         "internet)", hint="set firewall.wan_interfaces, e.g. [wan0]")


def _begin(args: argparse.Namespace) -> tuple[Config, StateStore, int, IsolationState]:
    """The configuration, the state directory, the time and the live state a command starts
    from."""
    config = load_config(args)
    _require_nftables(config)
    store = StateStore(config.state_dir)
    now = isolation.now()
    return config, store, now, isolation.load(store).live(now)


def _enforce(config: Config, store: StateStore, state: IsolationState, now: int, out: Output,
             event: dict[str, Any], said: str, **fields: str | None) -> int:
    """Make the kernel match `state`, leave the audit trail (history.jsonl, then the journal
    line `said` with `fields`) and show the result."""
    killswitch.enforce(config, store, state, now)
    store.append_history(event)
    journal().event(logging.WARNING, said, **fields)
    doc = describe(config, state, now)
    out.emit(doc, lambda: isolation_text(doc))
    return EXIT_OK


def cmd_isolate(args: argparse.Namespace, out: Output) -> int:
    config, store, now, previous = _begin(args)
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
    allow = allow_now(config, previous)
    # the gateway's lifelines (feed servers, resolvers, NTP, the DNS primary) as last resolved:
    # never cut, so the publisher's correction and a right clock still reach the gateway
    life = lifelines.kept(config, store).addresses()
    allow = allow._replace(addresses=tuple(dict.fromkeys([*allow.addresses, *life])))
    if peers:
        state = model.quarantine(previous, allow, [
            Quarantine(n, config.isolation.peer(n) or (), now, who, args.reason, deadline)
            for n in peers])
    else:
        state = model.isolate(previous, allow, since=now, by=who, reason=args.reason,
                              deadline=deadline)
    event = {"event": "isolate", "by": who, "reason": args.reason, "deadline": deadline,
             "peers": peers or None, "allow": list(allow.addresses)}
    return _enforce(config, store, state, now, out, event,
                    f"isolation: {scope} cut by {who}: {args.reason}",
                    action="isolate", by=who, reason=args.reason, peer=",".join(peers) or None,
                    deadline=human_utc(deadline) if deadline else None)


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    config, store, now, previous = _begin(args)
    who = operator()
    peers = list(args.peer or [])
    if peers:
        missing = [n for n in peers if n not in {p.name for p in previous.peers}]
        if missing:
            raise UsageError(f"peer(s) not quarantined: {', '.join(missing)}")
        state = model.release(previous, peers)
        scope = f"peer(s) {', '.join(peers)}"
    else:
        state = model.restore(previous)
        scope = "internet access"
    event = {"event": "restore", "by": who, "reason": args.reason, "peers": peers or None}
    return _enforce(config, store, state, now, out, event,
                    f"isolation: {scope} restored by {who}: {args.reason}",
                    action="restore", by=who, reason=args.reason, peer=",".join(peers) or None)
