"""What the kernel holds in the agent's table, read cheaply: the source of status, why and metrics.

Listing commands that make nft fetch every element take ~30 s with a million elements, so this
reads only what is cheap (docs/design.md §6): the terse ruleset listing (7 ms), the small sets
(isolation, management, offenders: 20 ms each), and single elements through a check-mode
`create element`, which the kernel refuses with EEXIST (or an overlap, for an address inside a
prefix) when the element is there, and aborts either way: nothing changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from agent.backends.nft_exec import Nft
from agent.errors import ApplyError

ISOLATION_SETS = ("iso_wan", "peer_v4", "peer_v6", "iso_allow_v4", "iso_allow_v6")
_PRESENT_MARKS = ("File exists", "interval overlaps")


@dataclass(frozen=True)
class SetElement:
    value: str
    expires: int | None = None  # seconds left before the kernel removes it; None: no timeout


@dataclass(frozen=True)
class KernelIsolation:
    """The kill switch as the kernel enforces it right now."""

    table_present: bool
    wan: dict[str, int | None] = field(default_factory=dict)    # cut interface -> seconds left
    peers: dict[str, int | None] = field(default_factory=dict)  # quarantined prefix -> seconds
    allow: tuple[str, ...] = ()                                 # essential services kept open
    chains: bool = False                                        # iso_* chains hooked

    @property
    def active(self) -> bool:
        return bool(self.wan)


def _strip(obj: Any) -> Any:
    """A listing object without what changes on its own (handles, counter values, expiries)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if k not in ("handle", "packets", "bytes", "expires")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _element(entry: Any) -> SetElement | None:
    """One `elem` of nft's JSON: a bare value, a prefix object, or {"elem": {...}}."""
    expires = None
    if isinstance(entry, dict) and "elem" in entry:
        inner = entry["elem"]
        expires = inner.get("expires") if isinstance(inner, dict) else None
        entry = inner.get("val") if isinstance(inner, dict) else inner
    if isinstance(entry, dict) and "prefix" in entry:
        prefix = entry["prefix"]
        entry = f"{prefix.get('addr')}/{prefix.get('len')}"
    elif isinstance(entry, dict) and "range" in entry:
        low, high = entry["range"]
        entry = f"{low}-{high}"
    if not isinstance(entry, str | int):
        return None
    return SetElement(str(entry), int(expires) if isinstance(expires, int | float) else None)


class KernelView:
    def __init__(self, nft: Nft, table: str) -> None:
        self.nft = nft
        self.table = table

    def skeleton(self) -> list[dict[str, Any]] | None:
        """Our table's objects from the terse JSON listing; None when the table is absent."""
        data = json.loads(self.nft.run("-j", "-t", "list", "ruleset") or '{"nftables": []}')
        objects = []
        present = False
        for item in data.get("nftables", []):
            kind, body = next(iter(item.items()))
            if not isinstance(body, dict) or body.get("family") != "inet":
                continue
            if kind == "table" and body.get("name") == self.table:
                present = True
            elif body.get("table") == self.table:
                objects.append({kind: body})
        return objects if present else None

    @staticmethod
    def hash_of(objects: list[dict[str, Any]] | None) -> str | None:
        if objects is None:
            return None
        text = json.dumps(_strip(objects), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def skeleton_hash(self) -> str | None:
        return self.hash_of(self.skeleton())

    @staticmethod
    def rooms(objects: list[dict[str, Any]] | None) -> dict[str, int]:
        """set -> its declared `size` (the most elements the kernel lets it hold; 0: declared
        without one), for each set of the listing."""
        out = {}
        for obj in objects or ():
            body = obj.get("set")
            if isinstance(body, dict):
                size = body.get("size")
                out[str(body.get("name"))] = size if isinstance(size, int) else 0
        return out

    def small_set(self, name: str) -> list[SetElement] | None:
        """The elements of one small set; None when the set (or the table) does not exist."""
        try:
            text = self.nft.run("-j", "list", "set", "inet", self.table, name)
        except ApplyError:
            return None
        out: list[SetElement] = []
        for item in json.loads(text or "{}").get("nftables", []):
            for entry in item.get("set", {}).get("elem", []):
                element = _element(entry)
                if element is not None:
                    out.append(element)
        return out

    def isolation(self, objects: list[dict[str, Any]] | None = None) -> KernelIsolation:
        """The isolation sets' contents with their remaining kernel timeouts."""
        objects = self.skeleton() if objects is None else objects
        if objects is None:
            return KernelIsolation(table_present=False)
        chains = {o["chain"].get("name") for o in objects if "chain" in o}
        sets = {o["set"].get("name") for o in objects if "set" in o}
        found = {name: (self.small_set(name) or []) if name in sets else []
                 for name in ISOLATION_SETS}
        return KernelIsolation(
            table_present=True,
            wan={e.value: e.expires for e in found["iso_wan"]},
            peers={e.value: e.expires for e in found["peer_v4"] + found["peer_v6"]},
            allow=tuple(e.value for e in found["iso_allow_v4"] + found["iso_allow_v6"]),
            chains={"iso_forward", "iso_output", "iso_input"} <= chains,
        )

    def present(self, set_name: str, value: str) -> bool | None:
        """Is `value` in the set now? None when the kernel cannot say (no table, no nft)."""
        try:
            self.nft.run("-c", "create", "element", "inet", self.table, set_name,
                         f"{{ {value} }}")
        except ApplyError as exc:
            if any(mark in exc.what for mark in _PRESENT_MARKS):
                return True
            return None
        return False

    def counters(self, objects: list[dict[str, Any]] | None = None) -> dict[str, int]:
        """Packets dropped per set (named counters `hit_<set>`), from the terse listing."""
        out: dict[str, int] = {}
        for obj in (self.skeleton() if objects is None else objects) or []:
            counter = obj.get("counter")
            if counter and str(counter.get("name", "")).startswith("hit_"):
                out[counter["name"][4:]] = int(counter.get("packets", 0))
        return out

    def offenders(self) -> list[dict[str, Any]]:
        """Internal hosts that tried to reach a blocked destination (small dynamic sets)."""
        out: list[dict[str, Any]] = []
        for fam in ("v4", "v6"):
            try:
                text = self.nft.run("-j", "list", "set", "inet", self.table, f"offenders_{fam}")
            except ApplyError:
                continue
            for item in json.loads(text).get("nftables", []):
                for elem in item.get("set", {}).get("elem", []):
                    entry = elem.get("elem", elem) if isinstance(elem, dict) else elem
                    if isinstance(entry, dict):
                        counter = entry.get("counter") or {}
                        out.append({"address": entry.get("val"),
                                    "expires_in": entry.get("expires"),
                                    "packets": counter.get("packets")})
                    else:
                        out.append({"address": entry, "expires_in": None, "packets": None})
        return out
