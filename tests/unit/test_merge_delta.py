"""Merge by difference (agent/merge_delta.py) gives what the full merge and plan give.

Feeds are drawn at random from a small universe of addresses, prefixes and names (so that they
overlap, cover and allow one another); the record is the full merge of the first inputs, saved
and read back as a sync does; then some feeds change. Whenever by_difference answers, its
blocklist and plan equal merge + make_plan of the new inputs against the record; when it does
not (a prefix or wildcard moved, an override differs), the full merge is what the pipeline uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import merge_delta
from agent.digest import KINDS, Digest, Summary, merged
from agent.indicators import DOMAIN, IPV4, IPV6, Indicator
from agent.merge import Blocklist, merge
from agent.plan import make_plan
from agent.state import StateStore

ADDRS = ["1.2.3.4", "1.2.3.5", "1.2.4.1", "9.9.9.9", "8.8.4.4", "2001:db8::1", "2001:db8:1::1"]
NETS = ["1.2.3.0/24", "1.2.0.0/16", "2001:db8::/48"]
NAMES = ["evil.com", "a.evil.com", "b.a.evil.com", "bad.org", "x.bad.org", "ok.net"]
VALUES = ([(IPV6 if ":" in a else IPV4, a, False) for a in ADDRS + NETS]
          + [(DOMAIN, n, False) for n in NAMES] + [(DOMAIN, n, True) for n in NAMES[:3]])
ALLOWS = [Indicator(IPV4, "1.2.3.5"), Indicator(IPV4, "9.9.9.9"),
          Indicator(DOMAIN, "x.bad.org"), Indicator(DOMAIN, "a.evil.com", True)]


def digest(key: str, values: list[tuple[str, str, bool]]) -> Digest:
    inds = [Indicator(t, v, w) for t, v, w in values]
    columns: dict[str, list[str]] = {k: [] for k in KINDS}
    for ind in inds:
        kind = ("wild" if ind.subdomains else "names") if ind.type == DOMAIN else (
            ("v4" if ind.type == IPV4 else "v6") + ("_nets" if "/" in ind.value else ""))
        if ind.value not in columns[kind]:
            columns[kind].append(ind.value)
    summary = Summary(key=key, accepted=len(inds), parsed=len(inds), parse_rejects=0,
                      counts={k: len(v) for k, v in columns.items()})
    return Digest(summary, columns)


feed = st.lists(st.sampled_from(VALUES), max_size=12)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(feed, min_size=1, max_size=3), data=st.data(),
       allow=st.lists(st.sampled_from(ALLOWS), max_size=2, unique=True))
def test_by_difference_equals_full_merge(tmp_path: Path, before: list[list[Any]],
                                         data: st.DataObject, allow: list[Indicator]) -> None:
    root = tmp_path / f"s{data.draw(st.integers(0, 10**9))}"
    store = StateStore(root)
    names = [f"f{i}" for i in range(len(before))]
    old = {n: digest(f"{i:064x}", v) for i, (n, v) in enumerate(zip(names, before, strict=True))}
    for n, d in old.items():
        store.digests.save(n, d)
    deny = [Indicator(IPV4, "8.8.4.4")] if data.draw(st.booleans()) else []
    first = merged(list(old.values()), [deny], allow=allow)
    if not first.total:
        return
    store.save_applied(first, {"digests": {n: d.ident for n, d in old.items()},
                               "merge": merge_delta.merge_print(deny, allow)})
    record = store.load_applied()
    assert record is not None
    now: dict[str, Digest | None] = dict(old)
    for i, name in enumerate(names):
        if data.draw(st.booleans()):
            now[name] = digest(f"{i + 100:064x}", data.draw(feed))
    if data.draw(st.booleans()):
        now["gone"] = None
    step = merge_delta.by_difference(record, now, store, deny=deny, allow=allow,
                                     merged_print=merge_delta.merge_print(deny, allow),
                                     max_change=0.5, force=False)
    want = merge([*(d.indicators() for d in now.values() if d is not None), deny], allow)
    if step is None:
        return
    assert Blocklist(*step.blocklist) == want
    plan = make_plan(Blocklist(*record[0]), want, max_change=0.5)
    assert step.plan == plan
    store.save_applied(step.blocklist, {})  # recorded at the cost of the difference
    again = store.load_applied()
    assert again is not None and Blocklist(*again[0]) == want


def test_an_address_change_is_merged_by_difference(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    a = digest("a" * 64, [(IPV4, "1.2.3.4", False), (IPV4, "1.2.3.0/24", False)])
    b = digest("b" * 64, [(IPV4, "9.9.9.9", False), (DOMAIN, "evil.com", False)])
    for name, d in (("a", a), ("b", b)):
        store.digests.save(name, d)
    store.save_applied(merged([a, b], []), {"digests": {"a": a.ident, "b": b.ident},
                                            "merge": merge_delta.merge_print([], [])})
    b2 = digest("c" * 64, [(IPV4, "9.9.9.8", False), (IPV4, "1.2.3.7", False),
                           (DOMAIN, "evil.com", False)])
    step = merge_delta.by_difference(store.load_applied(), {"a": a, "b": b2}, store, deny=[],
                                     allow=[], merged_print=merge_delta.merge_print([], []),
                                     max_change=0.5, force=False)
    assert step is not None
    assert step.plan.changes["v4"].added == {"9.9.9.8"}  # 1.2.3.7 is inside 1.2.3.0/24
    assert step.plan.changes["v4"].removed == {"9.9.9.9"}
    # no big set of the record had to be built: only the prefixes, for the address share
    assert set(step.blocklist.loaded()) <= {"v4_nets", "v6_nets"}
