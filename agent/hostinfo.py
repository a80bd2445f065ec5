"""Facts about this gateway that the guards protect: its own addresses, and the servers it
lives on: its DNS resolvers and NTP servers, as this system's configuration files name them.

Read-only edges, kept apart so the guards stay pure and tests pass these facts explicitly. A
failure to read them is not fatal (the configured protected list still applies) but is logged.
Files rather than `resolvectl` or `chronyc`: no program to wait for, nothing that a stopped
daemon hides, and the same answer in a test's directory tree (`root`).
"""

from __future__ import annotations

import configparser
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from agent.errors import ApplyError
from agent.util.command import Failure, run
from agent.util.hostport import HostPortError, split_host_port

log = logging.getLogger(__name__)
_IP = Failure(family="ip", missing_hint="", timeout_hint="", failed_hint="")  # logged, one line


def local_addresses() -> list[str]:
    """Every address configured on this host's interfaces (`ip -j addr`)."""
    try:
        links = json.loads(run(["ip", "-j", "addr", "show"], timeout=10, failure=_IP))
    except (OSError, ApplyError, ValueError) as exc:
        log.warning("cannot list this gateway's addresses (%s); only guards.protected applies",
                    exc)
        return []
    return [info["local"] for link in links for info in link.get("addr_info", ())
            if "local" in info]


class Server(NamedTuple):
    """A server the gateway depends on, as a file names it: an address or a host name."""

    host: str
    what: str  # "resolver in /etc/resolv.conf", "NTP server in /etc/chrony/chrony.conf", ...


# systemd's drop-in order: the main file, then *.conf of each directory (later ones win, but
# every server named anywhere is a lifeline, so all are read)
_SYSTEMD_DIRS = ("etc/systemd/{0}.conf.d", "run/systemd/{0}.conf.d", "usr/lib/systemd/{0}.conf.d")
_CHRONY_CONFS = ("etc/chrony/chrony.conf", "etc/chrony.conf")
_CHRONY_SOURCES = ("server", "pool", "peer")
_MAX_FILES = 64  # include/confdir/sourcedir chains stop here


def system_servers(root: Path = Path("/")) -> list[Server]:
    """Every resolver and NTP server this system's configuration names."""
    out: list[Server] = []
    for conf in ("etc/resolv.conf", "run/systemd/resolve/resolv.conf"):
        out += [Server(a, f"resolver in /{conf}") for a in resolvers(root / conf)]
    out += _systemd(root, "resolved", "Resolve", ("DNS", "FallbackDNS"), "resolver")
    out += _systemd(root, "timesyncd", "Time", ("NTP", "FallbackNTP"), "NTP server")
    for conf in _CHRONY_CONFS:
        out += _chrony(root, root / conf, [0])
    return list(dict.fromkeys(out))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _systemd(root: Path, unit: str, section: str, keys: tuple[str, ...], what: str
             ) -> list[Server]:
    files = [root / f"etc/systemd/{unit}.conf"]
    for pattern in _SYSTEMD_DIRS:
        files += sorted((root / pattern.format(unit)).glob("*.conf"))
    out = []
    for path in files:
        text = _read(path)
        if text is None:
            continue
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            log.warning("cannot read %s (%s); its servers are not protected", path, exc)
            continue
        for key in keys:
            for word in parser.get(section, key, fallback="").split():
                host = _server_host(word)
                if host:
                    out.append(Server(host, f"{what} in /{path.relative_to(root)}"))
    return out


def _server_host(word: str) -> str | None:
    """The host of resolved's `ADDRESS[:PORT][%IFACE][#NAME]` (or a plain NTP name)."""
    text = word.partition("#")[0].partition("%")[0]
    try:
        host, _ = split_host_port(text)
    except HostPortError:
        return None
    return host or None


def _chrony(root: Path, path: Path, seen: list[int]) -> Iterator[Server]:
    """`server`/`pool`/`peer` lines of chrony.conf, following include, confdir, sourcedir."""
    seen[0] += 1
    text = _read(path) if seen[0] <= _MAX_FILES else None
    if text is None:
        return
    where = f"/{path.relative_to(root)}" if path.is_relative_to(root) else str(path)
    for line in text.splitlines():
        words = line.split("#", 1)[0].split("!", 1)[0].split()
        if len(words) < 2:
            continue
        directive, arg = words[0].lower(), words[1]
        if directive in _CHRONY_SOURCES:
            yield Server(arg, f"NTP server in {where}")
        elif directive == "include":
            for inc in sorted(root.glob(arg.lstrip("/"))):
                yield from _chrony(root, inc, seen)
        elif directive in ("confdir", "sourcedir"):
            suffix = "*.conf" if directive == "confdir" else "*.sources"
            for directory in words[1:]:
                for inc in sorted((root / directory.lstrip("/")).glob(suffix)):
                    yield from _chrony(root, inc, seen)


def resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The nameservers this host uses: blocking them would blind the gateway."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1].partition("%")[0])
    return out
