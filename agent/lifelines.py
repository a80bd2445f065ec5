"""The gateway's lifelines, and the addresses of protected names: found at each sync, kept.

A feed that blocks its own server's address can never be corrected: the publisher's fix is not
fetched any more. The same goes for a mirror, the resolvers and NTP servers the gateway itself
uses (a wrong clock refuses every signed feed as expired or future), the dnsupdate primary and
the resolver `status` asks. These are the lifelines: never blocked (guard reason `lifeline`) and
kept reachable from the gateway during isolation, unless the operator lists them in
`guards.lifeline_except`. A protected name (`guards.protected`, `isolation.allow`) is protected
through its addresses too: an rpz-ip trigger or an nft element on one of them would cut it.

Names are resolved at each sync under one short total deadline (threads; a dead resolver costs
`DEADLINE`, never a stalled sync) and what they resolved to is kept in the state directory for
`KEEP_FOR` after it was last seen: DNS down, a CDN rotating its addresses, or a feed's own RPZ
entry answering NXDOMAIN never makes a lifeline unprotected. `why` and the kill switch read the
kept addresses only, without resolving anything.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from agent.config import Config
from agent.hostinfo import Server, system_servers
from agent.indicators import DOMAIN, InvalidValue, normalize
from agent.netrange import SpanSet, family_of, span
from agent.state import StateStore
from agent.util.hostport import HostPortError, split_host_port

log = logging.getLogger(__name__)
DEADLINE = 2.0  # seconds for every name together
KEEP_FOR = 7 * 86400  # an address stays protected this long after its name last resolved to it
MAX_PER_NAME = 64

Resolver = Callable[[Iterable[str], float], Mapping[str, list[str] | None]]


class Facts(NamedTuple):
    """What the guards protect beyond the configuration, as (value, what it is) pairs."""

    lifelines: tuple[tuple[str, str], ...] = ()  # addresses and names
    protected: tuple[tuple[str, str], ...] = ()  # addresses of protected names
    unresolved: tuple[str, ...] = ()  # names that did not answer this time (kept addresses used)

    def addresses(self) -> list[str]:
        """The lifelines' addresses that leave the gateway (not loopback): what the kill switch
        keeps open."""
        return [v for v, _ in self.lifelines if _is_address(v)
                and not v.startswith("127.") and v != "::1"]


def _is_address(value: str) -> bool:
    try:
        span(value, family_of(value))
    except (OSError, ValueError):
        return False
    return True


def configured(config: Config, system: Iterable[Server] = ()) -> list[Server]:
    """Every lifeline: the feed servers and mirrors, dns.server (dnsupdate), dns.resolver and
    the system's resolvers and NTP servers."""
    out: list[Server] = []
    for feed in config.feeds:
        for index, url in enumerate((feed.url, *feed.mirrors)):
            host = urlsplit(url).hostname
            if host:
                what = f"feed server of {feed.name}" if index == 0 else f"mirror of {feed.name}"
                out.append(Server(host, what))
    for key, value in (("dns.server", config.dns.server if config.dns.backend == "dnsupdate"
                        else None), ("dns.resolver", config.dns.resolver)):
        if value:
            with contextlib.suppress(HostPortError):  # check-config reports it
                out.append(Server(split_host_port(value)[0], f"DNS server of {key}"))
    return [*out, *system]


def protected_names(config: Config) -> list[str]:
    names = []
    for entry in (*config.guards.protected, *config.isolation.allow):
        try:
            ind = normalize(entry)
        except InvalidValue:
            continue
        if ind.type == DOMAIN:
            names.append(ind.value)
    return list(dict.fromkeys(names))


def resolve_all(names: Iterable[str], deadline: float = DEADLINE
                ) -> dict[str, list[str] | None]:
    """Each name's addresses (None: failed), for those that answered within `deadline`."""
    wanted = list(dict.fromkeys(names))
    results: dict[str, list[str] | None] = {}
    done = threading.Condition()

    def one(name: str) -> None:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            found: list[str] | None = sorted({str(i[4][0]).partition("%")[0] for i in infos})
        except (OSError, UnicodeError):
            found = None
        with done:
            results[name] = found
            done.notify_all()

    for name in wanted:  # daemon threads: one stuck in a dead resolver is abandoned
        threading.Thread(target=one, args=(name,), daemon=True, name=f"lifeline-{name}").start()
    end = time.monotonic() + deadline
    with done:
        while len(results) < len(wanted) and (left := end - time.monotonic()) > 0:
            done.wait(left)
        return dict(results)


def _merge_kept(kept: dict[str, Any], answers: Mapping[str, list[str] | None], now: int
                ) -> dict[str, Any]:
    """The kept {name: {address: last seen}} with this sync's answers, old addresses dropped."""
    out: dict[str, Any] = {}
    for name, seen in kept.items():
        if isinstance(seen, dict):
            out[name] = {a: int(t) for a, t in seen.items()
                         if isinstance(t, (int, float)) and now - t < KEEP_FOR}
    for name, addrs in answers.items():
        if addrs:
            entry = out.setdefault(name, {})
            entry.update(dict.fromkeys(addrs, now))
            if len(entry) > MAX_PER_NAME:  # the most recently seen
                entry = dict(sorted(entry.items(), key=lambda kv: -kv[1])[:MAX_PER_NAME])
            out[name] = entry
    return {name: seen for name, seen in out.items() if seen}


def _excepted(config: Config) -> Callable[[str], bool]:
    """Is a lifeline listed in guards.lifeline_except (a name and below, or a network)?"""
    names = {e for e in config.guards.lifeline_except if not _is_address(e)}
    nets = [e for e in config.guards.lifeline_except if _is_address(e)]
    sets = {fam: SpanSet.of([n for n in nets if family_of(n) == fam], fam)
            for fam in {family_of(n) for n in nets}}

    def test(value: str) -> bool:
        if _is_address(value):
            spans = sets.get(family_of(value))
            return bool(spans) and spans is not None and spans.touches(*span(
                value, family_of(value)))
        return any(value == n or value.endswith("." + n) for n in names)
    return test


def gather(config: Config, store: StateStore | None, *, now: int | None = None,
           system: Iterable[Server] | None = None, resolver: Resolver | None = None,
           save: bool = True) -> Facts:
    """Resolve the lifelines and protected names now (within DEADLINE), merged with what was
    kept; `store` None or `save` False: nothing written (dry runs)."""
    now = int(time.time()) if now is None else now
    servers = configured(config, system_servers() if system is None else system)
    lifeline_names = {s.host.lower().rstrip(".") for s in servers if not _is_address(s.host)}
    wanted = sorted(lifeline_names | set(protected_names(config)))
    answers = (resolver or resolve_all)(wanted, DEADLINE) if wanted else {}
    unresolved = tuple(n for n in wanted if not answers.get(n))
    if unresolved:
        log.info("not resolved in %.1f s (their kept addresses stay protected): %s", DEADLINE,
                 ", ".join(unresolved))
    kept_doc = store.load_lifelines() if store is not None else {}
    kept = _merge_kept(kept_doc.get("names", {}) if isinstance(kept_doc, dict) else {},
                       answers, now)
    if store is not None and save:
        store.save_lifelines({"names": kept, "updated": now, "unresolved": list(unresolved)})
    return _facts(config, servers, kept, unresolved)


def kept(config: Config, store: StateStore) -> Facts:
    """The facts from the kept addresses only, resolving nothing (`why`, `isolate`, `status`)."""
    doc = store.load_lifelines()
    names = doc.get("names", {})
    unresolved = doc.get("unresolved", [])
    return _facts(config, configured(config, system_servers()),
                  names if isinstance(names, dict) else {},
                  tuple(str(n) for n in unresolved) if isinstance(unresolved, list) else ())


def _facts(config: Config, servers: list[Server], kept: Mapping[str, Any],
           unresolved: tuple[str, ...]) -> Facts:
    excepted = _excepted(config)
    lifelines: list[tuple[str, str]] = []
    for server in servers:
        host = server.host.lower().rstrip(".")
        if excepted(host):
            continue
        lifelines.append((host, server.what))
        if not _is_address(host):
            lifelines += [(a, f"{server.what} ({host})") for a in sorted(kept.get(host, {}))
                          if not excepted(a)]
    protected = [(a, f"address of protected name {name}") for name in protected_names(config)
                 for a in sorted(kept.get(name, {}))]
    return Facts(tuple(dict.fromkeys(lifelines)), tuple(dict.fromkeys(protected)), unresolved)
