"""What the agent wants its table to hold, set by set, and how a kernel observation differs.

The desired state comes from the records the one writer keeps (the blocklist last applied, the
isolation intent, the configured management networks), rendered by the same renderers the
writer uses, then read back with the monitor's parser: the watcher compares like with like.

Two rules decide what counts as foreign:
- the blocklist sets are compared per element (a million of them: the applied list is read
  once per change of its file, lookups are set membership);
- an interface added to `iso_wan` by someone else is a cut, not a hole: break-glass.nft
  isolates exactly that way when the agent itself cannot run, so it is kept and reported, never
  undone (failing open during an incident is the one thing the kill switch must not do).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.daemon import nftmonitor
from agent.daemon.compact import BlobSet
from agent.errors import AgentError
from agent.isolation import IsolationState
from agent.ledger import LazyBlocklist
from agent.merge import Blocklist
from agent.render.common import BLOCK_SETS, mgmt_elements
from agent.render.nft_blocklist import render_table
from agent.render.nft_isolation import iso_elements
from agent.state import StateStore

BIG_SETS = tuple(name for name, _, _, _ in BLOCK_SETS)
SMALL_SETS = ("iso_wan", "peer_v4", "peer_v6", "iso_allow_v4", "iso_allow_v6", "mgmt_v4",
              "mgmt_v6")
Big = BlobSet | frozenset[str]  # a big set as the watcher keeps it
MANY = 64  # big-set events compared at once against a set built for them
KEEP_ADDED = frozenset({"iso_wan"})  # a foreign cut is kept (break-glass), see above
GRACE = 3  # seconds: an element this close to its timeout is let go, not re-added
_TIMEOUT = re.compile(r" timeout (\d+)s")


@dataclass
class SmallWant:
    """set -> {value: element text to add}; `loose` values are neither added nor removed."""

    sets: dict[str, dict[str, str]]
    loose: set[tuple[str, str]] = field(default_factory=set)


class Desired:
    """The desired state of the table, from the records; the blocklist cached by its file."""

    def __init__(self, config: Config, store: StateStore) -> None:
        self.config = config
        self.store = store
        self._key: tuple[int, int, int] | None = None
        self._blocklist = Blocklist()
        self._generation = 0
        self._big: dict[str, Big] = {}

    def blocklist(self) -> Blocklist:
        path = Path(self.store.root) / "applied.json"
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            key = None
        if key != self._key:
            applied = self.store.load_applied()
            blocklist = applied[0] if applied else Blocklist()
            self._generation = int(applied[1].get("generation", 0)) if applied else 0
            self._big = {name: _compact(name, blocklist) for name in BIG_SETS}
            self._blocklist = blocklist
            self._key = key
        return self._blocklist

    def big_known(self, nft_record: Mapping[str, Any]) -> bool:
        """Does the kernel hold the applied list? Not after an apply interrupted before its
        records, nor when nftables was applied and the rest of the sync was not (the next sync
        reloads the table whole): then its elements cannot be judged one by one."""
        self.blocklist()
        return bool(nft_record) and not nft_record.get("pending") and \
            nft_record.get("generation", 0) == self._generation

    def big(self) -> dict[str, Big]:
        """The blocklist's sets by nftables set name (read again if applied.json changed)."""
        self.blocklist()
        return self._big

    def small(self, intent: IsolationState, now: int) -> SmallWant:
        fw = self.config.firewall
        lines = mgmt_elements(fw, "v4") + mgmt_elements(fw, "v6")
        try:
            lines += iso_elements(fw, intent, now)
        except AgentError:  # isolated without wan_interfaces: nothing to put in iso_wan
            lines += iso_elements(fw, IsolationState(allow=intent.allow, peers=intent.peers), now)
        parsed = nftmonitor.elements(lines, fw.table)
        want = SmallWant({name: parsed.get(name, {}) for name in SMALL_SETS})
        for name, values in want.sets.items():
            for value, text in values.items():
                match = _TIMEOUT.search(text)
                if match and int(match.group(1)) < GRACE:
                    want.loose.add((name, value))
        return want


@dataclass
class Fix:
    """Element repairs for one set: `add` element texts, `delete` values, `kept` foreign cuts
    (the small sets are repaired whole from the intent; their lists are for the report)."""

    add: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    readded: list[str] = field(default_factory=list)  # values of `add`, for the report


def fold(events: Iterable[nftmonitor.Event]) -> dict[tuple[str, str], str]:
    """(set, value) -> the net operation: the last event per element wins."""
    return {(event.set, event.value): event.op for event in events}


def compare_events(net: Mapping[tuple[str, str], str], desired: Desired, small: SmallWant,
                   big_known: bool) -> dict[str, Fix]:
    """The repairs the folded events call for (the big sets only when `big_known`)."""
    fixes: dict[str, Fix] = {}
    big: Mapping[str, Container[str]] = desired.big()
    if big_known and sum(1 for set_name, _ in net if set_name in BIG_SETS) > MANY:
        big = {name: v.frozen() if isinstance(v, BlobSet) else v for name, v in big.items()}
    for (set_name, value), op in net.items():
        if set_name in BIG_SETS:
            if not big_known:
                continue
            values = big[set_name]
            wanted = value in values or nftmonitor.canonical(value) in values
            text = value
        elif set_name in SMALL_SETS:
            value = nftmonitor.canonical(value)
            if (set_name, value) in small.loose:
                continue
            texts = small.sets[set_name]
            wanted, text = value in texts, texts.get(value, value)
        else:
            continue  # offenders_* (the kernel's own), sets that are not ours
        _decide(fixes, set_name, value, text, present=op == "add", wanted=wanted)
    return fixes


def compare_small(kernel: Mapping[str, Iterable[str]], small: SmallWant) -> dict[str, Fix]:
    """The repairs a listing of the small sets calls for (set -> values in the kernel)."""
    fixes: dict[str, Fix] = {}
    for set_name, texts in small.sets.items():
        if set_name not in kernel:
            continue  # the set itself is missing: the skeleton check reloads the table
        present = {nftmonitor.canonical(v) for v in kernel[set_name]}
        for value in present | set(texts):
            if (set_name, value) in small.loose:
                continue
            _decide(fixes, set_name, value, texts.get(value, value), present=value in present,
                    wanted=value in texts)
    return fixes


def _decide(fixes: dict[str, Fix], set_name: str, value: str, text: str, *, present: bool,
            wanted: bool) -> None:
    if present == wanted:
        return
    fix = fixes.setdefault(set_name, Fix())
    if wanted:
        fix.add.append(text)
        fix.readded.append(value)
    elif set_name in KEEP_ADDED:
        fix.kept.append(value)
    else:
        fix.delete.append(value)


def skeleton_changes(objects: list[dict[str, Any]], expected: Iterable[str]) -> str:
    """A short account of what is missing or extra in the table (chains and sets by name)."""
    names = {f"{kind} {body.get('name')}" for item in objects
             for kind, body in item.items() if kind in ("chain", "set")}
    missing = sorted(set(expected) - names)
    extra = sorted(names - set(expected))
    parts = []
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if extra:
        parts.append("added: " + ", ".join(extra))
    return "; ".join(parts) or "a chain, rule or set definition differs from the last apply"


def expected_objects(config: Config) -> list[str]:
    """`chain NAME` / `set NAME` of the table as the renderer writes it (the names only)."""
    text = render_table(config.firewall, Blocklist())
    return [f"{m.group(1)} {m.group(2)}" for m in
            re.finditer(r"^\t(chain|set) (\S+) \{", text, re.M)]


def _compact(name: str, blocklist: Blocklist) -> Big:
    """A big set as the watcher keeps it: the record's base text and difference (see
    agent.daemon.compact); a blocklist that is not a record's is kept as it is."""
    if not isinstance(blocklist, LazyBlocklist):
        values: frozenset[str] = getattr(blocklist, name)
        return values
    blob = blocklist.base_loader()().get(name, "")
    delta = blocklist.delta
    return BlobSet(blob, delta.added.get(name, frozenset()),
                   delta.removed.get(name, frozenset()), blocklist.counts()[name])


def sample_missing(present: Callable[[str, str], bool | None], big: Mapping[str, Big],
                   sets: set[str] | None, count: int) -> str:
    """After lost events: are `count` wanted elements of each big set in the kernel (of those
    in `sets`, the sets the events were about; None: all)? A flushed set fails every probe; a
    flood of the agent's own (a full reload) passes them all. "" when none is missing."""
    missing = []
    for set_name in BIG_SETS:
        if sets is not None and set_name not in sets:
            continue
        values = big[set_name]
        picked = (values.sample(count) if isinstance(values, BlobSet)
                  else random.sample(sorted(values), min(count, len(values))))
        gone = [v for v in picked if present(set_name, v) is False]
        if gone:
            missing.append(f"{set_name}: {len(gone)} of {len(picked)} probed, " + sample(gone))
    return "; ".join(missing)


def sample(values: list[str], count: int = 5) -> str:
    """A few values, and how many more, for a log line."""
    shown = ", ".join(values[:count])
    return shown + (f" and {len(values) - count} more" if len(values) > count else "")
