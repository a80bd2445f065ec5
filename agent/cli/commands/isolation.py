"""isolate / restore: the kill switch, for on-call staff at 3 a.m.

It never waits for a sync, the daemon or DNS: the allowlist's names start resolving in threads
at once, the cut is one small nft transaction with the addresses stored for them, and what
answers within the deadline is added right after. Before the cut it checks that the WAN
interfaces exist and carry the default routes (else it refuses, unless --force); after it, it
reads the kernel back and reports what is really cut. Then the record, the audit trail (journal
with fields and history.jsonl), `enforced.nft` and `break-glass.nft`.

A full state disk stops none of it: each file is attempted, the journal line is always sent
(with NOT_PERSISTED= naming what failed), and the output (`not_persisted` in --json, a warning
on stderr, exit 1) says which files did not persist.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from agent.backends import killswitch
from agent.backends.nft_exec import Nft
from agent.backends.nft_view import KernelIsolation
from agent.backends.nft_writer import NotPersisted
from agent.cli.common import EXIT_FAIL, EXIT_OK, Output, load_config, operator
from agent.config import Config
from agent.daemon.notify import Journal
from agent.errors import AgentError, StateError, UsageError
from agent.isolation import intent, model, preflight, record, resolve
from agent.isolation.clock import Clock, read_clock
from agent.isolation.model import IsolationState, Verdict
from agent.isolation.status import describe, isolation_text, plan_doc, plan_text
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


class Start:
    """What a command starts from: configuration, state directory, nft, the clock and the
    record judged on the boot's clock. The kernel is read after the commit, not before: six
    nft listings would delay the cut (an isolation made with plain nft, break-glass, is then
    replaced rather than extended; the commit holds either way)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = StateStore(self.config.state_dir)
        self.nft = Nft()
        self.clock: Clock = read_clock()
        self.verdict: Verdict = intent.current(self.config, self.store, None, self.clock)

    @property
    def previous(self) -> IsolationState:
        return self.verdict.state

    def note_lifts(self) -> None:
        """A deadline the kernel honoured since the last record: said once in the history,
        before this command's record replaces it."""
        if self.verdict.lifted:
            record.note_lift(self.store)

    def read_back(self, state: IsolationState) -> tuple[dict[str, Any], KernelIsolation | None]:
        kernel = killswitch.read_kernel(self.config, self.nft)
        verdict = Verdict(state, lifted=False, removed=False, adopted=False)
        return describe(self.config, verdict, self.clock.wall, kernel), kernel


class Unsaved:
    """The files a command could not write once the kernel had changed (a full disk). The kill
    switch goes on regardless: each write is attempted, each failure kept here ("file (why)")
    for the journal line and the command's output, which say what did not persist."""

    def __init__(self) -> None:
        self.files: list[str] = []

    def _note(self, failed: Iterable[str]) -> None:
        self.files += [f for f in failed if f not in self.files]

    def commit(self, start: Start, state: IsolationState) -> None:
        """The kernel change through the one writer; records it could not write are noted
        (the change stands), any other failure (nft refused it) is raised."""
        try:
            killswitch.enforce(start.config, start.store, state, start.clock.wall, start.nft)
        except NotPersisted as exc:
            self._note(exc.failed)

    def attempt(self, name: str, write: Callable[[], object]) -> None:
        try:
            write()
        except OSError as exc:
            self._note([f"{name} ({exc.strerror or exc})"])
        except StateError as exc:
            self._note([f"{name} ({exc.what.splitlines()[0]})"])
        else:
            return
        log.error("could not write %s: %s", name, self.files[-1])

    def names(self) -> str:
        return ", ".join(dict.fromkeys(f.partition(" (")[0] for f in self.files))

    def report(self, doc: dict[str, Any], out: Output) -> bool:
        """`not_persisted` in the document; a warning when it is not empty (True)."""
        doc["not_persisted"] = list(self.files)
        if not self.files:
            return False
        names = set(self.names().split(", "))
        until = [what for files, what in (
            ({"isolation.nft", "enforced.nft", "break-glass.nft"},
             "a reboot loads the previous boot files"),
            ({"isolation.json"}, "the record (who, why, until when) is the previous one"),
            ({"history.jsonl"}, "history.jsonl lacks this event (the journal has it)"))
            if files & names]
        out.warn("WARNING: the kernel holds the change, but these files were NOT written: "
                 + "; ".join(self.files) + (". Until they are, " + "; ".join(until)
                                            if until else "")
                 + ". Free space (df -h) and run the command again")
        return True


def _preflight(start: Start, args: argparse.Namespace, out: Output,
               peers: list[str]) -> preflight.Preflight | None:
    """Refuse a cut that would be a lie (exit 1), unless --force; None for peers only."""
    if peers:
        return None
    prefix = start.nft.command[:-1]  # the namespace nft runs in (`ip netns exec NS nft`)
    check = preflight.check(start.config.firewall.wan_interfaces, prefix)
    if check.ok or args.dry_run:
        return check
    problems = "; ".join(check.problems())
    if not args.force:
        raise AgentError(f"refusing to isolate: {problems}",
                         hint=f"{check.fix()}; or isolate anyway with --force",
                         reason="isolation-preflight")
    out.warn(f"WARNING: --force: isolating although {problems}. THE CUT MAY NOT HOLD: check "
             "with `blocklist-agent status` and a probe from the LAN.")
    return check


def _question(start: Start, scope: str, kind: str | None, duration: int | None) -> str:
    lines = [f"Isolate {scope}?"]
    prev = start.previous
    if kind is not None:
        until = human_utc(prev.deadline) if prev.deadline else "restore"
        lines.insert(0, f"Already ISOLATED since {human_utc(prev.since) if prev.since else '?'}"
                     f" by {prev.by} ({prev.reason}), until {until}: this is {kind} it.")
    wan = preflight.ssh_over_wan(start.config.firewall.wan_interfaces, start.nft.command[:-1])
    if wan is not None:
        hint = ("" if duration else " Consider --for 15m, so that the kernel lifts the cut by "
                "itself if you lose this session.")
        lines.insert(0, f"WARNING: your SSH session arrives over {wan}, a WAN interface: the "
                     f"cut will close it (unless your address is an essential service).{hint}")
    return "\n".join(lines)


def cmd_isolate(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    _require_nftables(config)
    lookup = resolve.start(config)  # the names resolve while everything else happens
    start = Start(config)
    peers = list(args.peer or [])
    for name in peers:
        if config.isolation.peer(name) is None:
            known = ", ".join(n for n, _ in config.isolation.peers) or "none configured"
            raise UsageError(f"unknown peer {name!r} (isolation.peers: {known})")
    check = _preflight(start, args, out, peers)
    who, clock, previous = operator(), start.clock, start.previous
    if peers:
        kind = "replacing" if {p.name for p in previous.peers} & set(peers) else None
    else:
        kind = model.change_kind(previous, clock, args.duration)
    scope = f"peer(s) {', '.join(peers)}" if peers else "the whole gateway from the internet"
    if args.dry_run:
        resolution = lookup.settle(resolve.stored(start.store))
        state = _next_state(start, args, peers, who,
                            resolve.essentials(config, start.store, resolution))
        doc = plan_doc(config, state, check, kind, peers, clock.wall)
        out.emit(doc, lambda: plan_text(doc))
        return EXIT_OK if check is None or check.ok or args.force else EXIT_FAIL
    if not _confirm(_question(start, scope, kind, args.duration), out, args.yes):
        print("nothing done", file=sys.stderr)
        return EXIT_FAIL
    stored = resolve.stored(start.store)
    first = lookup.settle(stored, 0.0)  # what answered already: the cut waits for nothing
    state = _next_state(start, args, peers, who, resolve.essentials(config, start.store, first))
    unsaved = Unsaved()  # a full disk stops neither the cut nor its audit
    unsaved.attempt("history.jsonl", start.note_lifts)
    unsaved.commit(start, state)
    try:
        resolution = lookup.settle(stored)  # the rest of the deadline, after the cut
        resolve.keep(start.store, config, resolution, clock.wall)
        if resolution != first:  # what answered after the cut is opened (and recorded) now
            wider = model.with_allow(state, resolve.essentials(config, start.store, resolution))
            unsaved.commit(start, wider)
            state = wider
    finally:  # the kernel cuts: the audit trail is written whatever happens next
        event: dict[str, Any] = {
            "event": "isolate", "by": who, "reason": args.reason, "deadline": state.deadline,
            "peers": peers or None, "allow": list(state.allow), "mode": kind,
            "unresolved": list(state.unresolved) or None,
            "forced": check.problems() if check is not None and not check.ok else None}
        if kind is not None and not peers:
            event["previous"] = {k: getattr(previous, k) for k in ("since", "by", "reason",
                                                                    "deadline")}
        unsaved.attempt("history.jsonl", lambda: start.store.append_history(event))
        journal().event(logging.WARNING, f"isolation: {scope} cut by {who}: {args.reason}"
                        + (f" ({kind} the isolation by {previous.by})" if kind else "")
                        + (f" (NOT persisted: {unsaved.names()})" if unsaved.files else ""),
                        action="isolate", by=who, reason=args.reason,
                        peer=",".join(peers) or None,
                        deadline=human_utc(state.deadline) if state.deadline else None,
                        not_persisted=unsaved.names() or None)
    doc, kernel = start.read_back(state)
    if kind is not None:
        doc["change"] = kind
    unpersisted = unsaved.report(doc, out)
    out.emit(doc, lambda: (f"{kind} the running isolation\n" if kind else "")
             + isolation_text(doc))
    ghosts = [w for w in doc["cut"] if check is not None and w in check.missing]
    if ghosts:
        around = sorted({dev for _, dev in check.outside}) if check is not None else []
        out.warn(f"WARNING: the kernel cuts {', '.join(ghosts)}, which does not exist here: "
                 "nothing passes through it"
                 + (f"; traffic through {', '.join(around)} is NOT cut" if around else ""))
    missing = [] if peers else sorted(set(config.firewall.wan_interfaces) - set(doc["cut"]))
    if kernel is None or missing:
        what = ("the kernel could not be read back" if kernel is None
                else f"the kernel does NOT cut {', '.join(missing)}")
        out.warn(f"isolation NOT verified: {what}; check `nft list set inet "
                 f"{config.firewall.table} iso_wan`")
        return EXIT_FAIL
    return EXIT_FAIL if unpersisted else EXIT_OK


def _next_state(start: Start, args: argparse.Namespace, peers: list[str], who: str,
                allow: model.Allow) -> IsolationState:
    clock, config = start.clock, start.config
    if peers:
        return model.quarantine(start.previous, allow, [
            model.new_quarantine(n, config.isolation.peer(n) or (), clock=clock, by=who,
                                 reason=args.reason, duration=args.duration)
            for n in peers])
    return model.isolate(start.previous, allow, clock=clock, by=who, reason=args.reason,
                         duration=args.duration)


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    _require_nftables(config)
    start = Start(config)
    previous = start.previous
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
    unsaved = Unsaved()
    unsaved.attempt("history.jsonl", start.note_lifts)
    unsaved.commit(start, state)
    event = {"event": "restore", "by": who, "reason": args.reason, "peers": peers or None,
             "lifted": None if peers or not previous.active else
             {k: getattr(previous, k) for k in ("since", "by", "reason")}}
    unsaved.attempt("history.jsonl", lambda: start.store.append_history(event))
    journal().event(logging.WARNING, f"isolation: {scope} restored by {who}: {args.reason}"
                    + (f" (NOT persisted: {unsaved.names()})" if unsaved.files else ""),
                    action="restore", by=who, reason=args.reason, peer=",".join(peers) or None,
                    not_persisted=unsaved.names() or None)
    doc, kernel = start.read_back(state)
    unpersisted = unsaved.report(doc, out)
    out.emit(doc, lambda: isolation_text(doc))
    if kernel is None or (not peers and doc["active"]):
        out.warn("restore NOT verified: " + ("the kernel could not be read back" if kernel
                                             is None else "the kernel still cuts "
                                             + ", ".join(doc["cut"])))
        return EXIT_FAIL
    return EXIT_FAIL if unpersisted else EXIT_OK
