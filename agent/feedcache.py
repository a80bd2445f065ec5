"""Which validated result a feed copy has: the cached digest, or one parsed and guarded now.

The key of a digest (agent.digest) is everything its content depends on: the sha256 of each
payload with its path and format, the feed's settings, the guards' inputs apart from the time
(the gateway's addresses, the protected networks, the public-suffix list, ...), and the agent's
own code, so that an upgrade never reads a result an older parser made. The time enters only
through expiries, which the digest bounds itself (`Summary.holds_at`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import agent
from agent import bulk
from agent.config import FeedConfig
from agent.digest import Digest, from_checked
from agent.formats.policy import Payloads, parse_payloads
from agent.guards import GuardReject, Policy
from agent.state import StateStore

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The sha256 of the agent's own source: a new version reads nothing an older one made."""
    root = Path(agent.__file__).resolve().parent
    digest = hashlib.sha256(agent.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        try:
            digest.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()


def stable(value: Any) -> str:
    """A text that is equal for equal settings, whatever the objects' identities."""
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(stable, value)) + "]"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(map(stable, value))) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(sorted(f"{stable(k)}:{stable(v)}" for k, v in value.items())) + "}"
    fingerprint = getattr(value, "fingerprint", None)
    if callable(fingerprint):
        return f"{type(value).__name__}({fingerprint()})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _stable_fields(value, [f.name for f in dataclasses.fields(value)])
    slots = [s for cls in type(value).__mro__ for s in getattr(cls, "__slots__", ())]
    if slots:
        return _stable_fields(value, slots)
    if hasattr(value, "__dict__"):
        return _stable_fields(value, sorted(vars(value)))
    raise TypeError(f"no stable form for {type(value).__name__}")


def _stable_fields(value: Any, names: Iterable[str]) -> str:
    return f"{type(value).__name__}(" + ",".join(
        f"{n}={stable(getattr(value, n))}" for n in names) + ")"


def policy_fingerprint(policy: Policy) -> str | None:
    """The guards' inputs except `now` (expiries are bounded by each digest); None when some
    input has no stable form (nothing is then cached)."""
    names = [f.name for f in dataclasses.fields(policy) if f.name != "now"]
    try:
        return hashlib.sha256(_stable_fields(policy, names).encode()).hexdigest()
    except TypeError as exc:
        log.debug("guards cannot be fingerprinted (%s): results are not cached", exc)
        return None


def digest_key(feed: FeedConfig, data: Payloads, policy_print: str) -> str:
    """The key of a result: the payloads' sha256 (as verification checked them, when it says:
    a million-line payload costs 20 ms a hash) and everything else that decides it."""
    key = hashlib.sha256(f"{code_fingerprint()}\n{feed!r}\n{policy_print}\n".encode())
    checked: Mapping[str, str] = getattr(data, "hashes", {})
    for path, fmt, body in data.payloads:
        sha = checked.get(path) or hashlib.sha256(body).hexdigest()
        key.update(f"{path}\0{fmt}\0{sha}\n".encode())
    return key.hexdigest()


def before(feed: FeedConfig, data: Payloads, previous: Payloads | None, store: StateStore,
           policy_print: str) -> Digest | None:
    """The cached result of the feed's previous (verified) copy, when it is a one-payload copy
    like `data`: the base of a reading by difference (agent.bulk_delta)."""
    if previous is None or len(data.payloads) != 1 or len(previous.payloads) != 1:
        return None
    if previous.payloads[0][:2] != data.payloads[0][:2]:  # another file or format
        return None
    found = store.digests.load(feed.name, digest_key(feed, previous, policy_print))
    if (found is None or found.plain is None or found.summary.valid_from is not None
            or found.summary.valid_until is not None):  # verdicts the time may have changed
        return None
    return found


class Validated(NamedTuple):
    digest: Digest
    index_lines: tuple[str, ...]  # provenance lines ("value\t*\tfile:line\n"), when asked
    rejected: tuple[GuardReject, ...]  # every guard reject, when the lines were asked
    parsed_now: bool


def validated(feed: FeedConfig, data: Payloads, policy: Policy, store: StateStore, *,
              policy_print: str | None, lines: bool, save: bool,
              previous: Payloads | None = None) -> Validated:
    """The validated result of this copy. `lines`: the provenance and reject lines are needed
    too (a fresh copy, to be recorded), which the cache does not hold; `save`: keep a result
    computed now (never in a dry run); `previous`: the feed's last good copy (verified), from
    whose result a plain list is read by difference."""
    key = digest_key(feed, data, policy_print) if policy_print is not None else ""
    if key and not lines:
        cached = store.digests.load(feed.name, key)
        if cached is not None and cached.summary.holds_at(policy.now):
            return Validated(cached, (), (), False)
    read = bulk.texts(data)
    if read is not None:
        was = before(feed, data, previous, store, policy_print) if key and policy_print else None
        old = bulk.kept_texts(previous) if was is not None and previous is not None else None
        digest, index, rejected = bulk.validate(feed, data, policy, key, lines=lines,
                                                before=was, read=read,
                                                before_text=old[0] if old else None)
    else:
        parsed = parse_payloads(feed, data, with_index=lines)
        guard = policy.check(parsed.indicators)
        digest = from_checked(key, parsed.total, parsed.rejects, guard)
        index, rejected = parsed.index_lines, guard.rejected
    if key and save:
        store.digests.keep(feed.name, digest)  # written once the change is enforced
    return Validated(digest, index, rejected if lines else (), True)
