"""The allowlist's names and their addresses: the kill switch's one DNS edge, which it never waits
on.

When isolation is needed DNS is likely broken (or about to be cut with everything else), so a
name in `isolation.allow` is kept open with the addresses it resolved to at the last sync or
isolate (`allow-names.json`). Refreshing them runs in threads under one hard total deadline
(`DEADLINE`, whatever the number of names or the resolver's timeouts): a name that does not
answer in time keeps its stored addresses, and is reported. `isolate` cuts first with what it
has and adds what answered afterwards; rendering, the boot files and `status` never resolve.

`essentials` is the one definition of what an isolation keeps open (the allowlist, its names,
and the gateway's lifelines as last resolved): `isolate` and every other rendering of the
isolation, and `status`'s comparison with the kernel, use it, so that a reload or a repair
carries exactly what `isolate` opened.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from agent import lifelines
from agent.config import Config
from agent.isolation.model import Allow, allow_list, allow_targets
from agent.state import StateStore

log = logging.getLogger(__name__)
DEADLINE = 0.5  # seconds, for every name together


class Resolution(NamedTuple):
    """What the allowlist's names stand for now."""

    addresses: dict[str, list[str]]  # name -> addresses (answered now, else as stored)
    answered: tuple[str, ...]        # resolved within the deadline
    unresolved: tuple[str, ...]      # failed or too slow (kept with their stored addresses, if any)

    def allow(self, addrs: Iterable[str]) -> Allow:
        return allow_list(list(addrs), self.addresses, self.unresolved)


class Lookup:
    """getaddrinfo for each name in its own daemon thread, started at construction.

    A thread stuck in a dead resolver cannot be cancelled; it is abandoned (it ends with its
    resolver timeout, or with the process) and nothing waits for it. The deadline is kept by
    polling with short sleeps, not by a timed condition wait: it then holds whatever the C
    library's timed waits do (libfaketime, which the clock-jump tests use, breaks those).
    """

    POLL = 0.005  # seconds between two looks at what answered

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(dict.fromkeys(names))
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._results: dict[str, list[str] | None] = {}  # None: failed
        for name in self.names:
            threading.Thread(target=self._resolve, args=(name,), daemon=True,
                             name=f"resolve-{name}").start()

    def _resolve(self, name: str) -> None:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            result: list[str] | None = sorted(
                {str(info[4][0]).partition("%")[0] for info in infos})
        except (OSError, UnicodeError):
            result = None
        with self._lock:
            self._results[name] = result

    def wait(self, total: float = DEADLINE) -> dict[str, list[str] | None]:
        """What answered within `total` seconds of the start (at once if all did)."""
        deadline = self.started + total
        while True:
            with self._lock:
                answers = dict(self._results)
            left = deadline - time.monotonic()
            if len(answers) == len(self.names) or left <= 0:
                return answers
            time.sleep(min(self.POLL, left))

    def settle(self, stored: Mapping[str, list[str]], total: float = DEADLINE) -> Resolution:
        """The names' addresses: those that answered, else those stored."""
        answers = self.wait(total)
        addresses: dict[str, list[str]] = {}
        answered, unresolved = [], []
        for name in self.names:
            found = answers.get(name)
            if found:
                addresses[name] = found
                answered.append(name)
            else:
                unresolved.append(name)
                if stored.get(name):
                    addresses[name] = list(stored[name])
        return Resolution(addresses, tuple(answered), tuple(unresolved))


def stored(store: StateStore) -> dict[str, list[str]]:
    """name -> addresses as last resolved (at a sync or an isolate)."""
    return {name: addresses for name, (addresses, _) in _entries(store).items() if addresses}


def _entries(store: StateStore) -> dict[str, tuple[list[str], bool]]:
    """name -> (addresses last resolved, did the last attempt fail)."""
    out: dict[str, tuple[list[str], bool]] = {}
    for name, entry in store.load_allow_names().items():
        if not isinstance(entry, dict):
            continue
        addresses = entry.get("addresses")
        if not (isinstance(addresses, list) and all(isinstance(a, str) for a in addresses)):
            addresses = []
        failed = ("failed_at" in entry
                  and int(entry["failed_at"] or 0) >= int(entry.get("resolved_at") or 0))
        out[name] = (addresses, failed)
    return out


def keep(store: StateStore, config: Config, resolution: Resolution, now: int) -> None:
    """Store what answered, for the configured names only (a removed name is forgotten)."""
    _, names = allow_targets(config)
    old = store.load_allow_names()
    data = {}
    for name in names:
        if name in resolution.answered:
            data[name] = {"addresses": resolution.addresses[name], "resolved_at": now}
        elif name in resolution.unresolved:
            data[name] = {**(old.get(name) or {}), "failed_at": now}
        elif isinstance(old.get(name), dict):
            data[name] = old[name]
    store.save_allow_names(data)


def kept_open(config: Config, store: StateStore) -> list[str]:
    """The addresses and prefixes kept open whatever the names answer: those of
    `isolation.allow` (and of feed URLs with `allow_feeds`), then the gateway's lifelines (feed
    servers and mirrors, its resolvers and NTP servers, the dnsupdate primary, dns.resolver)
    as last resolved (agent.lifelines.kept: nothing asked of a resolver), so that the
    publisher's correction and a right clock still reach the gateway during a cut."""
    addrs = allow_targets(config)[0]
    return list(dict.fromkeys([*addrs, *lifelines.kept(config, store).addresses()]))


def essentials(config: Config, store: StateStore, resolution: Resolution | None = None
               ) -> Allow:
    """The essential services an isolation keeps open: the one definition that `isolate`, a
    full reload, a repair (the kernel watcher's too), break-glass.nft, the boot files and
    `status`'s comparison with the kernel all use (through agent.isolation.intent).

    `kept_open`, then the addresses of the allowlist's names: those `resolution` found
    (`isolate`, which has just asked), else those stored (`allow-names.json`), asking no
    resolver."""
    addrs = kept_open(config, store)
    if resolution is not None:
        return resolution.allow(addrs)
    _, names = allow_targets(config)
    known = _entries(store)
    return allow_list(addrs, {n: known[n][0] for n in names if known.get(n, ([], True))[0]},
                      [n for n in names if known.get(n, ([], True))[1]])


def start(config: Config) -> Lookup:
    """Begin resolving the allowlist's names (and the feed hosts with allow_feeds)."""
    return Lookup(allow_targets(config)[1])


def refresh(config: Config, store: StateStore, now: int, total: float = DEADLINE) -> Resolution:
    """For every sync (a small hook for the pipeline's callers): resolve the names within
    `total` seconds and store what answered, so an isolation needs no resolver."""
    resolution = start(config).settle(stored(store), total)
    if resolution.unresolved:
        log.warning("isolation.allow: no answer within %.1f s for %s; their last known "
                    "addresses stay in use", total, ", ".join(resolution.unresolved))
    keep(store, config, resolution, now)
    return resolution
