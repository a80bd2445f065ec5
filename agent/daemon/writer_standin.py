"""STAND-IN for branch t11-writer (agent.backends.nft_view, agent.backends.nft_writer and
StateStore.kernel_lock): the same API, thin, so the kernel watcher can be built and tested
before the one writer lands. Delete this file when merging t11-writer; only imports change.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent import isolation
from agent.backends.nft_exec import Nft
from agent.backends.nftables import NftablesBackend, _config_hash
from agent.config import Config
from agent.errors import ApplyError, StateError
from agent.isolation import IsolationState
from agent.merge import Blocklist
from agent.render.nft_blocklist import render_table
from agent.state import StateStore

_PRESENT_MARKS = ("File exists", "interval overlaps")


@contextlib.contextmanager
def kernel_lock(store: StateStore, timeout: float = 30.0) -> Iterator[None]:
    """StateStore.kernel_lock(timeout) of t11-writer: flock on state_dir/kernel.lock."""
    store.ensure()
    path = store.root / "kernel.lock"
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateError("the nftables table is being changed by another process",
                                     where=str(path)) from None
                time.sleep(0.02)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class SetElement:
    value: str
    expires: int | None = None


@dataclass(frozen=True)
class KernelIsolation:
    table_present: bool
    wan: dict[str, int | None] = field(default_factory=dict)
    peers: dict[str, int | None] = field(default_factory=dict)
    allow: tuple[str, ...] = ()
    chains: bool = False

    @property
    def active(self) -> bool:
        return bool(self.wan)


def _element(entry: Any) -> SetElement | None:
    expires = None
    if isinstance(entry, dict) and "elem" in entry:
        inner = entry["elem"]
        expires = inner.get("expires") if isinstance(inner, dict) else None
        entry = inner.get("val") if isinstance(inner, dict) else inner
    if isinstance(entry, dict) and "prefix" in entry:
        entry = f"{entry['prefix'].get('addr')}/{entry['prefix'].get('len')}"
    elif isinstance(entry, dict) and "range" in entry:
        entry = "-".join(str(v) for v in entry["range"])
    if not isinstance(entry, str | int):
        return None
    return SetElement(str(entry), int(expires) if isinstance(expires, int | float) else None)


class KernelView:
    def __init__(self, nft: Nft, table: str) -> None:
        self.nft = nft
        self.table = table
        self.backend = NftablesBackend(nft)

    def skeleton(self) -> list[dict[str, Any]] | None:
        return self.backend.table_objects(self.table)

    @staticmethod
    def hash_of(objects: list[dict[str, Any]] | None) -> str | None:
        if objects is None:
            return None
        from agent.backends.nftables import _strip
        return hashlib.sha256(json.dumps(_strip(objects), sort_keys=True).encode()).hexdigest()

    def skeleton_hash(self) -> str | None:
        return self.hash_of(self.skeleton())

    def small_set(self, name: str) -> list[SetElement] | None:
        try:
            text = self.nft.run("-j", "list", "set", "inet", self.table, name)
        except ApplyError:
            return None
        out = []
        for item in json.loads(text or "{}").get("nftables", []):
            for entry in item.get("set", {}).get("elem", []):
                element = _element(entry)
                if element is not None:
                    out.append(element)
        return out

    def isolation(self, objects: list[dict[str, Any]] | None = None) -> KernelIsolation:
        objects = self.skeleton() if objects is None else objects
        if objects is None:
            return KernelIsolation(table_present=False)
        chains = {o["chain"].get("name") for o in objects if "chain" in o}
        sets = {o["set"].get("name") for o in objects if "set" in o}
        found = {n: (self.small_set(n) or []) if n in sets else []
                 for n in ("iso_wan", "peer_v4", "peer_v6", "iso_allow_v4", "iso_allow_v6")}
        return KernelIsolation(
            table_present=True, wan={e.value: e.expires for e in found["iso_wan"]},
            peers={e.value: e.expires for e in found["peer_v4"] + found["peer_v6"]},
            allow=tuple(e.value for e in found["iso_allow_v4"] + found["iso_allow_v6"]),
            chains={"iso_forward", "iso_output", "iso_input"} <= chains)

    def present(self, set_name: str, value: str) -> bool | None:
        try:
            self.nft.run("-c", "create", "element", "inet", self.table, set_name,
                         f"{{ {value} }}")
        except ApplyError as exc:
            return True if any(m in exc.what for m in _PRESENT_MARKS) else None
        return False


class TableWriter:
    def __init__(self, config: Config, store: StateStore, nft: Nft | None = None,
                 lock_timeout: float = 30.0) -> None:
        self.config = config
        self.store = store
        self.nft = nft or Nft()
        self.lock_timeout = lock_timeout

    def desired_isolation(self) -> IsolationState:
        with kernel_lock(self.store, self.lock_timeout):
            return isolation.load(self.store)

    def repair(self, reason: str) -> str:
        """A full reload from the records (the blocklist last applied, the isolation intent)."""
        fw = self.config.firewall
        with kernel_lock(self.store, self.lock_timeout):
            applied = self.store.load_applied()
            blocklist = applied[0] if applied else Blocklist()
            now = isolation.now()
            self.nft.load(render_table(fw, blocklist, isolation.load(self.store), now))
            view = KernelView(self.nft, fw.table)
            self.store.save_nft_record({"table": fw.table, "config": _config_hash(fw),
                                        "skeleton": view.skeleton_hash()})
        return f"nftables: full reload ({reason})"

    def repair_elements(self, set_name: str, add: list[str], delete: list[str],
                        reason: str) -> str:
        """One transaction: `add` (element texts, timeouts included) present, `delete`
        (values) absent; an add before each delete makes it succeed whether or not the
        element is still there."""
        t = self.config.firewall.table
        lines = [f"add element inet {t} {set_name} {{ {e} }}" for e in add]
        for value in delete:
            lines += [f"add element inet {t} {set_name} {{ {value} }}",
                      f"delete element inet {t} {set_name} {{ {value} }}"]
        with kernel_lock(self.store, self.lock_timeout):
            self.nft.load("\n".join(lines) + "\n")
        return f"nftables: {set_name} +{len(add)} -{len(delete)} ({reason})"
