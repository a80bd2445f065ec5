"""The bulk path of parse + guards (agent/bulk.py) gives the general path's result exactly.

For any bare plain list (hypothesis draws them from the values that are hard for either path:
canonical and non-canonical addresses and names, special, protected and own ranges, public
suffixes, RPZ keywords, wildcards, URLs, garbage), `bulk.validate` and parse_payloads +
Policy.check + digest.from_checked agree on every value, reject, refusal, count and provenance
line, in order, and on refusing the whole update past max_reject_ratio.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import bulk, bulk_delta
from agent.config import FeedConfig
from agent.digest import KINDS, Digest, from_checked
from agent.errors import FormatError
from agent.formats.policy import parse_payloads
from agent.guards import Policy
from agent.indicators import DOMAIN, HOSTNAME_RE, IPV4, Indicator
from agent.psl import PublicSuffixList
from agent.state import CachedFeed, FeedRecord
from agent.state.feeds import INDEX

PSL = PublicSuffixList(["com", "co.uk", "uk", "fr", "gouv.fr", "*.ck", "!www.ck", "example"])
POLICY = Policy.build(protected=["chu-example.fr", "192.0.2.0/24", "45.10.0.0/16"],
                      own_addresses=["203.0.113.9", "81.2.3.4"], psl=PSL, now=1_700_000_000)
TOKENS = [
    "1.2.3.4", "185.220.101.7", "10.1.2.3", "127.0.0.1", "45.10.3.4", "81.2.3.4", "81.2.3.5",
    "192.0.2.1", "0.1.2.3", "255.255.255.255", "224.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
    "1.2.3.0/24", "1.2.3.4/32", "45.10.0.0/15", "8.0.0.0/7", "2001:db8::1", "2a01::1",
    "2a01:0::1", "::1", "[2a01::2]:80", "1.2.3.4:443", "evil.example", "evil.com", "EVIL.com",
    "evil.com.", "com", "co.uk", "x.co.uk", "uk", "foo.ck", "www.ck", "a.b.ck", "chu-example.fr",
    "www.chu-example.fr", "fr", "x.rpz-ip", "8.0.0.0.10.rpz-ip", "rpz-nsdname", "hxxpevil.com",
    "hxxp://evil.com/x", "https://a.evil.com:8443/p", "*.wild.com", ".dot.com", "*.fr",
    "host1", "a.b1", "x.123", "1password.com", "xn--bcher-kva.example", "_dmarc.evil.com",
    "-bad.com", "a..b", "a" * 64 + ".com", ("a" * 60 + ".") * 5 + "com", "!!", "a/b", "%",
    "evil.com/path", "09.com", "1.2.3.4a", "# a header, as most lists have", ";comment", "#",
    "# Liste é", "#\t1.2.3.4", " # indented", "1.2.3.4 # trailing",
]
line = st.one_of(st.sampled_from(TOKENS), st.just(""),
                 st.from_regex(r"[a-z0-9]{1,8}\.(com|fr|ck|uk)", fullmatch=True),
                 st.from_regex(r"(1[0-9]{0,2}|[2-9][0-9]?)(\.(25[0-5]|1?[0-9]{1,2})){3}",
                               fullmatch=True))


class Data:
    def __init__(self, *payloads: tuple[str, str, bytes]) -> None:
        self.payloads = payloads


def general(feed: FeedConfig, data: Data) -> tuple[Digest, tuple[str, ...], tuple[Any, ...]]:
    parsed = parse_payloads(feed, data, with_index=True)
    guard = POLICY.check(parsed.indicators)
    return from_checked("k", parsed.total, parsed.rejects, guard), parsed.index_lines, \
        guard.rejected


def same(feed: FeedConfig, data: Data) -> None:
    assert bulk.applies(data)
    try:
        want = general(feed, data)
    except FormatError as exc:
        with pytest.raises(FormatError) as got:
            bulk.validate(feed, data, POLICY, "k", lines=True)
        assert str(got.value) == str(exc)
        return
    got = bulk.validate(feed, data, POLICY, "k", lines=True)
    assert got[0].summary == want[0].summary
    for kind in KINDS:
        assert sorted(got[0].values(kind)) == sorted(want[0].values(kind)), kind
    assert expanded(data, got[1]) == list(want[1])
    assert got[2] == want[2]


def expanded(data: Data, index: tuple[str, ...]) -> list[str]:
    """The index as `why` reads it back from a generation directory (CachedFeed)."""
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp)
        for path, _, body in data.payloads:
            (gen / path).write_bytes(body)
        (gen / INDEX).write_text("".join(index))
        return list(CachedFeed(FeedRecord("f", 1, "", "", 0), gen).index_lines())


@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=40), st.booleans(), st.sampled_from([0.2, 1.0]))
def test_bulk_equals_general(rows: list[str], subdomains: bool, ratio: float) -> None:
    feed = FeedConfig(name="f", url="file:///x", subdomains=subdomains, max_reject_ratio=ratio)
    body = "\n".join(rows).encode()
    if not bulk.applies(Data(("list.txt", "plain", body))):
        return  # a comment or blank inside a line: the general path only
    same(feed, Data(("list.txt", "plain", body)))


def test_two_payloads_crlf_and_auto() -> None:
    feed = FeedConfig(name="f", url="file:///x")
    same(feed, Data(("a.txt", "plain", b"1.2.3.4\r\n10.0.0.1\r\nevil.com\r\n"),
                    ("b.txt", "auto", b"co.uk\n\nEVIL.com\n*.x.com\n45.10.9.9\n")))


def test_a_list_with_a_comment_header_takes_the_bulk_path() -> None:
    """Most public lists start with comment lines: they are skipped, line numbers kept."""
    feed = FeedConfig(name="f", url="file:///x")
    body = ("# Example list\n# generated 2026-12-01 \u00e9\n;x\r\n1.2.3.4\n#mid\nEVIL.com\n"
            "10.0.0.1\n")
    data = Data(("l.txt", "plain", body.encode()))
    assert bulk.applies(data)
    same(feed, data)
    digest, index, _ = bulk.validate(feed, data, POLICY, "k", lines=True)
    assert digest.summary.parsed == 3 and "evil.com\t\tl.txt:6\n" in index
    bad = Data(("l.txt", "plain", b"# caf\xe9\n1.2.3.4\n"))  # not UTF-8: a reject, not a comment
    assert not bulk.applies(bad)


def test_a_byte_order_mark_is_not_part_of_the_first_value() -> None:
    """decode drops a UTF-8 BOM; the provenance read back (CachedFeed) must drop it too, or
    the first value of the list has no line for `why`."""
    same(FeedConfig(name="f", url="file:///x"),
         Data(("l.txt", "plain", b"\xef\xbb\xbf1.2.3.4\nevil.com\n")))


def test_what_the_bulk_path_does_not_take() -> None:
    assert not bulk.applies(Data(("a", "plain", b"1.2.3.4 # comment\n")))
    assert not bulk.applies(Data(("a", "hosts", b"0.0.0.0 evil.com\n")))
    assert not bulk.applies(Data(("a", "auto", b"0.0.0.0 evil.com\n")))
    assert not bulk.applies(Data(("a", "plain", "évil.com\n".encode())))


def test_guard_shortcuts_never_hide_a_refusal() -> None:
    """Policy.clear_first_octets and name_suspect are supersets of the checks they skip."""
    clear = POLICY.clear_first_octets()
    for first in range(256):
        for rest in ("0.0.0", "2.3.4", "255.255.255"):
            value = f"{first}.{rest}"
            bad = POLICY.check_one(Indicator(IPV4, value))
            assert bad is None or str(first) not in clear, value
    names = [t.lower().rstrip(".") for t in TOKENS if HOSTNAME_RE.fullmatch(t.lower())]
    for name in [*names, "a.chu-example.fr", "example", "x.example", "rpz-ip", "x.ck", "www.ck",
                 "co.uk", "kawasaki.jp", "x.kawasaki.jp", "city.kawasaki.jp"]:
        for wild in (False, True):
            bad = POLICY.check_one(Indicator(DOMAIN, name, wild))
            assert bad is None or POLICY.name_suspect(name, wild), (name, wild)



@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=30), st.lists(line, max_size=10), st.lists(st.booleans()),
       st.booleans(), st.sampled_from([0.2, 1.0]), st.booleans())
def test_reading_by_difference_equals_reading_all(
        old_rows: list[str], added: list[str], drop: list[bool], subdomains: bool,
        ratio: float, in_order: bool) -> None:
    """A copy read from the previous one's result (agent.bulk_delta) is the full reading's:
    counts, samples, refusals, provenance, special rows, a refusal past max_reject_ratio; its
    change is the lists' difference. `in_order`: with the previous copy's text, which the
    reading compares in order when its plain rows are unique (agent.align)."""
    feed = FeedConfig(name="f", url="file:///x", subdomains=subdomains, max_reject_ratio=ratio)
    kept = [r for r, d in zip(old_rows, [*drop, *[False] * len(old_rows)], strict=False)
            if not d]
    new_rows = kept[: len(kept) // 2] + added + kept[len(kept) // 2:]
    old = Data(("list.txt", "plain", "\n".join(old_rows).encode()))
    new = Data(("list.txt", "plain", "\n".join(new_rows).encode()))
    if not bulk.applies(old) or not bulk.applies(new):
        return
    text = bulk.texts(old)[0] if in_order else None  # type: ignore[index]
    assert bulk.kept_texts(old) == bulk.texts(old)  # the previous copy's text, read again
    with pytest.MonkeyPatch.context() as patch:  # even a change of every row, here
        patch.setattr(bulk_delta, "MAX_SHARE", float("inf"))
        previous = bulk.validate(replace(feed, max_reject_ratio=1.0), old, POLICY, "k0",
                                 lines=True)[0]
        try:
            want = bulk.validate(feed, new, POLICY, "k", lines=True)
        except FormatError as exc:
            with pytest.raises(FormatError) as refused:
                bulk.validate(feed, new, POLICY, "k", lines=True, before=previous,
                              before_text=text)
            assert str(refused.value) == str(exc)
            return
        got = bulk.validate(feed, new, POLICY, "k", lines=True, before=previous,
                            before_text=text)
    change = got[0].change
    assert change is not None and change.base == previous.ident
    assert got[0].summary == want[0].summary
    assert sorted(got[0].special or ()) == sorted(want[0].special or ())
    assert got[0].special_lines == want[0].special_lines
    for kind in KINDS:
        values = got[0].values(kind)
        assert len(values) == len(set(values)), kind
        assert sorted(values) == sorted(want[0].values(kind)), kind
        now, was = set(values), set(previous.values(kind))
        assert change.added[kind] == now - was and change.removed[kind] == was - now, kind
    assert got[1] == want[1]
    assert got[2] == want[2]


def test_a_large_difference_reads_every_row() -> None:
    feed = FeedConfig(name="f", url="file:///x")
    old = "\n".join(f"1.2.{i // 250}.{i % 250}" for i in range(1000))
    new = "\n".join(f"5.6.{i // 250}.{i % 250}" for i in range(1000))
    previous = bulk.validate(feed, Data(("l", "plain", old.encode())), POLICY, "a", lines=False)
    got = bulk.validate(feed, Data(("l", "plain", new.encode())), POLICY, "b", lines=False,
                        before=previous[0])
    assert got[0].change is None and got[0].summary.counts["v4"] == 1000
    small = new.replace("5.6.0.1\n", "9.9.9.9\n")
    again = bulk.validate(feed, Data(("l", "plain", small.encode())), POLICY, "c", lines=False,
                          before=got[0])
    assert again[0].change is not None
    assert again[0].change.added["v4"] == {"9.9.9.9"}
    assert again[0].change.removed["v4"] == {"5.6.0.1"}


def test_a_kept_result_remembers_its_rows_for_the_next_reading() -> None:
    """The cache file (agent/state/cache.py) keeps Digest.special, plain and known, so that
    the next copy is read by difference from a result read back from disk."""
    from agent.state import cache

    feed = FeedConfig(name="f", url="file:///x")
    body = "1.2.3.4\nEVIL.com\n10.0.0.1\nevil.com\n1.2.3.0/24\nx.org\n" + "".join(
        f"5.6.7.{i}\n" for i in range(20))  # few special rows: worth remembering
    digest = bulk.validate(feed, Data(("l", "plain", body.encode())), POLICY, "k",
                           lines=False)[0]
    back = cache.decode(cache.encode(digest), "k")
    assert sorted(back.special or ()) == ["1.2.3.0/24", "10.0.0.1", "EVIL.com"]
    assert back.plain == {"v4": 21, "names": 2} == digest.plain
    assert back.special_lines == digest.special_lines == (1, 2, 4)  # where the reading in
    # order finds them again (agent.bulk_delta)
    assert back.known == digest.known == {"1.2.3.0/24": ("v4_nets", "1.2.3.0/24", ""),
                                          "EVIL.com": ("names", "evil.com", "")}
    assert list(back.values("names")) == ["evil.com", "x.org"]
    new = body.replace("x.org\n", "y.org\n")
    got = bulk.validate(feed, Data(("l", "plain", new.encode())), POLICY, "k2", lines=False,
                        before=back)[0]
    assert got.change is not None and got.change.removed["names"] == {"x.org"}
    general = from_checked("g", 1, [], POLICY.check([Indicator(IPV4, "1.2.3.4")]))
    assert cache.decode(cache.encode(general), "g").special is None


def test_a_result_kept_in_a_sync_is_written_when_the_queue_is_flushed(tmp_path: Path) -> None:
    """pipeline.run keeps the feeds' new results once the change is enforced: until then a
    kept result is found in memory, and nothing is on disk."""
    from agent.state import cache

    feed = FeedConfig(name="f", url="file:///x")
    digest = bulk.validate(feed, Data(("l", "plain", b"1.2.3.4\nevil.com\n")), POLICY,
                           "a" * 64, lines=False)[0]
    store = cache.Digests(tmp_path)
    store.keep("f", digest)
    assert store.load("f", "a" * 64) is digest
    assert not list(tmp_path.rglob("*.digest"))
    store.flush()
    assert [p.name for p in tmp_path.rglob("*.digest")] == ["a" * 64 + ".digest"]
    again = cache.Digests(tmp_path).load("f", "a" * 64)
    assert again is not None and list(again.values("v4")) == ["1.2.3.4"]
