"""`why VALUE`: is it blocked, by which feed entries, or allowed, and by what.

Answers from the recorded state only (what was last applied, each feed's provenance index and
guard rejects, the local overrides), so it works when the feeds are unreachable and never
changes anything. The provenance index is scanned as text: one pass over a million lines costs
about a second, which keeps the sync itself free of per-value bookkeeping.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from agent import overrides
from agent.guards import PREFIX_TOO_SHORT, Policy
from agent.indicators import DOMAIN, IPV4, Indicator, normalize
from agent.merge import Blocklist, name_trigger
from agent.netrange import covers
from agent.state import StateStore


@dataclass
class Answer:
    value: str
    type: str
    blocked: bool = False
    enforced: list[dict[str, str]] = field(default_factory=list)  # set + entry that matches
    sources: list[dict[str, Any]] = field(default_factory=list)  # feed entries behind it
    allowed_by: list[dict[str, Any]] = field(default_factory=list)
    guard: list[dict[str, str]] = field(default_factory=list)  # guard rails that refuse it
    applied: bool = True  # False: nothing was ever applied

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value, "type": self.type, "blocked": self.blocked,
            "enforced": self.enforced, "sources": self.sources,
            "allowed_by": self.allowed_by, "guard": self.guard, "applied": self.applied,
        }


def _covers(entry: str, flag: str, target: Indicator) -> bool:
    """Does a list entry (value + coverage flag, `Indicator.flag`) cover `target`?"""
    if target.type == DOMAIN:
        cover = flag.lstrip("!")
        if entry == target.value:
            return cover != "."  # "*.x" alone (below only) does not cover x itself
        return cover in ("*", ".") and target.value.endswith("." + entry)
    if entry == target.value:
        return True
    if "/" not in entry:
        return False
    try:
        return covers(entry, target.value)
    except (OSError, ValueError):  # a damaged index line blocks nothing
        return False


def _enforced(bl: Blocklist, target: Indicator) -> Iterator[dict[str, str]]:
    if target.type == DOMAIN:
        yield from _name_verdict(bl, target.value)
        return
    singles, nets = ("v4", "v4_nets") if target.type == IPV4 else ("v6", "v6_nets")
    if target.value in getattr(bl, singles):
        yield {"set": singles, "entry": target.value}
    for net in getattr(bl, nets):
        if _covers(net, "", target):
            yield {"set": nets, "entry": net}


def _name_verdict(bl: Blocklist, name: str) -> Iterator[dict[str, str]]:
    """The record RPZ applies to `name` (`merge.name_trigger`), with the action a feed gave."""
    found = name_trigger(bl, name)
    if found is None:
        return
    group, owner = found
    action = "drop" if owner in bl.drop else "nodata" if owner in bl.nodata else ""
    entry = owner if group == "names" else f"*.{owner}"
    if group == "wild" and owner == name:
        entry = f"*.{name}"
    yield {"set": group, "entry": entry, **({"action": action} if action else {})}


def explain(value: str, store: StateStore, local_dir: str, policy: Policy | None,
            allow_feeds: Collection[str] = ()) -> Answer:
    """`allow_feeds`: the feeds with `role: allow`, whose entries allow rather than block."""
    target = normalize(value)
    ans = Answer(target.value if not target.subdomains else f"*.{target.value}", target.type)
    applied = store.load_applied()
    if applied is None:
        ans.applied = False
    else:
        ans.enforced = list(_enforced(applied[0], target))
        ans.blocked = bool(ans.enforced)
    for name in store.feed_names():
        cached = store.load_feed(name)
        if cached is None:
            continue
        serial = cached.record.serial
        for line in cached.index_lines():
            entry, flag, ref = _fields(line)
            if _covers(entry, flag, target):
                shown = f"*.{entry}" if flag.lstrip("!") in ("*", ".") else entry
                found = {"feed": name, "serial": serial, "entry": shown, "ref": ref}
                if flag.startswith("!"):  # the feed's exception to its own blocks
                    ans.allowed_by.append({"exception": name, **found})
                else:
                    (ans.allowed_by if name in allow_feeds else ans.sources).append(found)
        for line in cached.reject_lines():
            entry, reason, detail = _fields(line)
            if entry == target.value:
                ans.guard.append({"feed": name, "reason": reason, "detail": detail})
    local = overrides.load(local_dir)
    for o in local.allow:
        if _covers(o.indicator.value, o.indicator.flag, target):
            ans.allowed_by.append({"override": "allow", **o.to_dict()})
    for o in local.deny:
        if _covers(o.indicator.value, o.indicator.flag, target):
            ans.sources.append({"feed": "local deny", "entry": o.indicator.value,
                                "ref": o.where, "reason": o.reason, "by": o.author})
    if policy is not None:
        bad = policy.check_one(target)
        # enforced from a feed despite the guards' minimum: that feed has its own min_prefix_v*
        overridden = bad is not None and bad.reason == PREFIX_TOO_SHORT and ans.blocked and any(
            "serial" in s for s in ans.sources)
        if bad is not None and not overridden and all(g["detail"] != bad.detail
                                                      for g in ans.guard):
            ans.guard.append({"feed": "(guards)", "reason": bad.reason, "detail": bad.detail})
    return ans


def _fields(line: str) -> tuple[str, str, str]:
    entry, _, rest = line.rstrip("\n").partition("\t")
    second, _, third = rest.partition("\t")
    return entry, second, third
