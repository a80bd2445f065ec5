"""What the resolver does now, asked over DNS: the serial of the RPZ zone it serves (`status`)
and whether it blocks a name (`why NAME`).

The agent's own record says what it *gave* the resolver; only a query says what clients *get*
(a resolver that failed to reload, a follower that stopped transferring, a policy zone left out
of the resolver's configuration all look fine in the record). The resolver is `dns.resolver`,
else `dns.server`, else 127.0.0.1: the Unbound snippet sets `for-downstream: yes` so that it
answers for the zone, BIND serves its response-policy zone to localhost, and for the
dnsupdate path the primary (or a resolver following it) does. Knot Resolver does not serve its
RPZ as a zone, so only the effect on a name can be observed there.

Nothing here raises for a resolver that is down or refuses: the answers say so, since `status`
must still print the rest.
"""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from agent.backends.dns_client import Connect
from agent.backends.dns_common import load_state
from agent.backends.dns_query import ask, ask_serial, resolver_address, zone_of
from agent.config import Config
from agent.render.rpz import action_rdata

_ACTIONS = {".": "nxdomain", "*.": "nodata", "rpz-drop.": "drop", "rpz-passthru.": "passthru"}


def rendered_serial(config: Config) -> int | None:
    """The serial the agent last gave the resolver (zone file) or left on the primary."""
    serial = load_state(config.state_dir).get("serial")
    return serial if isinstance(serial, int) else None


def served_serial(config: Config, *, connect: Connect | None = None, timeout: float = 2.0
                  ) -> int | None:
    """The RPZ zone serial the resolver serves now (SOA query), None if it cannot be known."""
    serial = zone_status(config, connect=connect, timeout=timeout)["served_serial"]
    return serial if isinstance(serial, int) else None


def zone_status(config: Config, *, connect: Connect | None = None, timeout: float = 2.0
                ) -> dict[str, Any]:
    """Rendered and served serials side by side, with the reason when served is unknown."""
    served, error = ask_serial(config, connect=connect, timeout=timeout)
    rendered = rendered_serial(config)
    return {"backend": config.dns.backend, "zone": zone_of(config),
            "server": resolver_address(config), "rendered_serial": rendered,
            "served_serial": served, "in_sync": None if served is None else served == rendered,
            "error": error}


def _trigger(server: str, name: str, config: Config, *, connect: Connect | None,
             timeout: float) -> dict[str, str] | None:
    """The policy the served zone holds for NAME (exact or wildcard owner), if any."""
    qname = f"{name}.{zone_of(config)}"
    kinds = ["CNAME"]
    if config.dns.action.startswith("redirect:"):
        kinds.append(action_rdata(config.dns.action).split()[0])
    for kind in dict.fromkeys(kinds):
        reply = ask(server, qname, kind, connect=connect, timeout=timeout)
        if reply is None or reply.rcode() != dns.rcode.NOERROR:
            return None
        for rrset in reply.answer:
            if rrset.name == dns.name.from_text(qname) and rrset.rdtype != dns.rdatatype.SOA:
                data = rrset[0].to_text()
                if rrset.rdtype == dns.rdatatype.CNAME:
                    return {"rdata": f"CNAME {data}",
                            "action": _ACTIONS.get(data, f"redirect:{data.rstrip('.')}")}
                return {"rdata": f"{dns.rdatatype.to_text(rrset.rdtype)} {data}",
                        "action": f"redirect:{data}"}
    return None


def _effect(reply: dns.message.Message | None, action: str) -> bool:
    """Does the answer look like `action` was applied?"""
    if reply is None:
        return action == "drop"
    if action == "nxdomain":
        return reply.rcode() == dns.rcode.NXDOMAIN
    data = {rd.to_text().rstrip(".") for rrset in reply.answer for rd in rrset}
    if action == "nodata":
        return reply.rcode() == dns.rcode.NOERROR and not data
    if action.startswith("redirect:"):
        return action.partition(":")[2] in data
    return False


def resolver_answer(config: Config, name: str, *, connect: Connect | None = None,
                    timeout: float = 2.0) -> dict[str, Any]:
    """Does the resolver block NAME now? Its answer, the zone's trigger for NAME, a verdict.

    `blocked` is True (the answer is the configured action and the zone or the kind of answer
    says it is the policy), False (a normal answer, or a passthru) or None (cannot tell, e.g.
    NXDOMAIN without a trigger: the name may simply not exist, or an rpz-ip trigger matched).
    """
    server = resolver_address(config)
    name = name.lower().rstrip(".")
    action = config.dns.action
    out: dict[str, Any] = {"name": name, "server": server, "action": action, "rcode": None,
                           "answers": [], "trigger": None, "blocked": None, "detail": "",
                           "error": None}
    if server is None:
        out["detail"] = "no resolver: dns.backend is none"
        return out
    qtype = "AAAA" if action.startswith("redirect:") and ":" in action[9:] else "A"
    try:
        reply = ask(server, name, qtype, connect=connect, timeout=timeout)
        if config.dns.backend != "knot-resolver":
            out["trigger"] = _trigger(server, name, config, connect=connect, timeout=timeout)
    except (OSError, dns.exception.DNSException) as exc:
        out["error"] = f"cannot ask {server}: {exc}"
        out["detail"] = out["error"]
        return out
    if reply is not None:
        out["rcode"] = dns.rcode.to_text(reply.rcode())
        out["answers"] = sorted(f"{dns.rdatatype.to_text(r.rdtype)} {rd.to_text()}"
                                for r in reply.answer for rd in r)
    trigger = out["trigger"]
    # the zone's own record says which action to look for: an RPZ feed's drop or NODATA
    # is rendered as the feed gave it, whatever dns.action says
    effect = _effect(reply, trigger["action"] if trigger is not None else action)
    if trigger is not None and trigger["action"] == "passthru":
        out["blocked"], out["detail"] = False, "allowed: the zone holds a passthru for it"
    elif effect and trigger is not None:
        out["blocked"], out["detail"] = True, f"blocked: the zone says {trigger['rdata']}"
    elif trigger is not None:
        out["blocked"] = False
        out["detail"] = (f"the zone says {trigger['rdata']} but the answer is not rewritten: "
                         "is the RPZ zone enabled in the resolver's policy?")
    elif reply is None:
        out["error"] = f"no answer from {server} within {timeout:g} s"
        out["detail"] = out["error"]
    elif effect and action.startswith("redirect:"):
        out["blocked"], out["detail"] = True, "blocked: the answer is the block page"
    elif effect:
        out["detail"] = (f"{out['rcode']} without a trigger for this name: it may not exist, "
                         "or an rpz-ip trigger rewrote an answer pointing at a blocked address")
    else:
        out["blocked"], out["detail"] = False, "not blocked: a normal answer"
    return out

