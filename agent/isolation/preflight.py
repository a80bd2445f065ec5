"""Before the cut: does the configuration name the interfaces the internet really goes through?

`iso_wan` matches interface *names*: a name that does not exist (`ens18` on a box whose uplink
is `enp1s0`, a typo) cuts nothing, silently. So `isolate` checks, in the network namespace its
nft command runs in (the same command prefix), that every WAN interface exists and that the
default routes (IPv4 and IPv6, when there are any) leave through one of them; `check-config`
only warns (ppp links come and go). The operator's own SSH session is looked up the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.errors import ApplyError
from agent.util.command import Failure, run

_IP = Failure(family="ip", missing_hint="install iproute2", timeout_hint="check the system load",
              failed_hint="")
FAMILIES = (("IPv4", "-4"), ("IPv6", "-6"))


@dataclass(frozen=True)
class Preflight:
    wan: tuple[str, ...]                    # firewall.wan_interfaces
    interfaces: tuple[str, ...] = ()        # every interface that exists
    routes: tuple[tuple[str, str], ...] = ()  # (family, device) of each default route
    error: str | None = None                # could not ask `ip`: nothing is known

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(w for w in self.wan if w not in self.interfaces)

    @property
    def outside(self) -> tuple[tuple[str, str], ...]:
        """Default routes leaving through an interface that is not a WAN interface."""
        return tuple((fam, dev) for fam, dev in self.routes if dev not in self.wan)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.outside

    def problems(self) -> list[str]:
        """What makes the cut a lie, one sentence each (empty when `ok`)."""
        if self.error is not None:
            return [f"cannot check the WAN interfaces: {self.error}"]
        out = []
        for name in self.missing:
            out.append(f"firewall.wan_interfaces names {name}, which does not exist on this "
                       "gateway: nothing would be cut through it")
        for fam, dev in self.outside:
            out.append(f"the {fam} default route leaves through {dev}, which is not in "
                       f"firewall.wan_interfaces: traffic to the internet through it would "
                       "not be cut")
        return out

    def fix(self) -> str:
        """The configuration that would pass, said as the operator types it."""
        devices = list(dict.fromkeys(dev for _, dev in self.routes))
        keep = [w for w in self.wan if w in self.interfaces and w not in devices]
        names = devices + keep
        if not names:
            return "set firewall.wan_interfaces to the interfaces that lead to the internet"
        return f"set firewall.wan_interfaces: [{', '.join(names)}] (ip -br link lists them)"


def _ip(prefix: Sequence[str], *args: str) -> list[dict[str, Any]]:
    data = json.loads(run([*prefix, "ip", "-j", *args], timeout=5, failure=_IP) or "[]")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def interfaces(prefix: Sequence[str] = ()) -> list[str]:
    """Names of the interfaces that exist now (in the namespace of `prefix`)."""
    return [str(link["ifname"]) for link in _ip(prefix, "link", "show") if "ifname" in link]


def default_routes(prefix: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(family, device) of every default route of the main table (multipath: each hop)."""
    out = []
    for family, flag in FAMILIES:
        for route in _ip(prefix, flag, "route", "show", "default"):
            hops = route.get("nexthops") or [route]
            out += [(family, str(hop["dev"])) for hop in hops if hop.get("dev")]
    return list(dict.fromkeys(out))


def check(wan: Sequence[str], prefix: Sequence[str] = ()) -> Preflight:
    try:
        return Preflight(tuple(wan), tuple(interfaces(prefix)), tuple(default_routes(prefix)))
    except (ApplyError, OSError, ValueError, KeyError, TypeError) as exc:
        return Preflight(tuple(wan), error=str(exc).splitlines()[0])


def absent(names: Sequence[str], prefix: Sequence[str] = ()) -> tuple[list[str], str | None]:
    """(configured interfaces that do not exist now, why they could not be listed)."""
    try:
        present = set(interfaces(prefix))
    except (ApplyError, OSError, ValueError, KeyError, TypeError) as exc:
        return [], str(exc).splitlines()[0]
    return [n for n in names if n not in present], None


def ssh_over_wan(wan: Sequence[str], prefix: Sequence[str] = (),
                 environ: dict[str, str] | None = None) -> str | None:
    """The WAN interface this command's own SSH session arrives on, or None.

    SSH_CONNECTION is "client port server-address port": the server address says on which
    interface the session came in."""
    words = (environ if environ is not None else os.environ).get("SSH_CONNECTION", "").split()
    if len(words) != 4:
        return None
    local = words[2].partition("%")[0].removeprefix("::ffff:")
    try:
        links = _ip(prefix, "addr", "show")
    except (ApplyError, OSError, ValueError):
        return None
    for link in links:
        name = link.get("ifname")
        if name in wan and any(info.get("local") == local for info in link.get("addr_info", ())):
            return str(name)
    return None
