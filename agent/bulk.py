"""The bulk path of parse + guards for plain lists, the shape of every big feed.

The general path makes an Indicator per line, normalizes it and checks it: about 3 µs a line,
three seconds for a national list. Most lines of a plain list are already canonical (a dotted
quad, a lowercase hostname), and most values are far from anything the guards protect. So here
a line is recognised as canonical with one C call or one regex match, kept as the plain string
it is, and only the lines that are not (prefixes, URLs, `*.name`, mixed case, garbage) and the
values the guards might refuse (`Policy.clear_first_octets`, `Policy.name_suspect`) go through
`normalize` and `Policy.check_one`, one by one. The result is the general path's, value for
value, reject for reject, in the same order (tests/unit/test_bulk.py compares them).
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from agent import bulk_delta
from agent.config import FeedConfig
from agent.digest import KINDS, SAMPLE, Change, Digest, Summary, kind_of
from agent.formats import sniff
from agent.formats._common import decode, finish, has_bad_bytes
from agent.formats.plain import is_bare
from agent.formats.policy import Payloads, check_reject_ratio, too_many
from agent.guards import EXPIRED, GuardReject, Policy
from agent.indicators import DOMAIN, HOSTNAME_RE, IPV4, Indicator, Reject, try_normalize
from agent.state.feeds import CANONICAL_MARK
from agent.util.gcpause import collector_paused

_AF_INET = socket.AF_INET
_pton = socket.inet_pton
_name = HOSTNAME_RE.fullmatch
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"  # as indicators.canonical_kind


_COMMENT_LINE = re.compile(r"^[#;].*$", re.MULTILINE)


def applies(data: Payloads) -> bool:
    """Every payload is a plain list without trailing comments, blanks around values or odd
    bytes (whole-line comments are fine: the header most public lists carry)."""
    return texts(data) is not None


def texts(data: Payloads) -> tuple[str, ...] | None:
    """Each payload's text as `validate` reads it, when the bulk path takes them all."""
    out = []
    for _, fmt, body in data.payloads:
        text = (_bare(body) if fmt == "plain" or (fmt in ("", "auto") and sniff(body) == "plain")
                else None)
        if text is None:
            return None
        out.append(text)
    return tuple(out)


def kept_texts(data: Payloads) -> tuple[str, ...]:
    """`texts` of payloads it took before (the previous copy of a result kept under their
    bytes' key): the same text, without checking again that they are bare (30 ms a million
    lines)."""
    return tuple(_blanked(decode(body)) for _, _, body in data.payloads)


def _blanked(text: str) -> str:
    """Each whole-line comment blanked: the general path skips it, line numbers kept."""
    return _COMMENT_LINE.sub("", text) if "#" in text or ";" in text else text


def _bare(body: bytes) -> str | None:
    """The payload's text with each whole-line comment blanked (as the general path skips
    it, line numbers kept), when the rest is bare; else None (the general path reads it)."""
    try:
        text = decode(body)
        if ("#" in text or ";" in text) and has_bad_bytes(text):
            return None  # a line that is not UTF-8 is a reject, even a comment
        text = _blanked(text)
        return text if is_bare(text) else None
    except Exception:
        return None


@dataclass
class _Feed:
    """The accumulated result over the feed's payloads."""

    columns: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    extras: list[Indicator] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    refused: list[GuardReject] = field(default_factory=list)
    index: list[str] = field(default_factory=list)
    accepted: int = 0
    until: int | None = None
    special: list[str] = field(default_factory=list)  # rows not taken as they are (a payload's)
    special_lines: list[int] = field(default_factory=list)  # their line indexes
    scanned: dict[str, int] = field(default_factory=dict)  # values the scan took, per kind
    # odd rows accepted as a plain value: row -> (kind, value, provenance flag), Digest.known
    known: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    plain: dict[str, int] | None = None  # Digest.plain, when read by difference
    change: Change | None = None  # from the previous copy's result, when read by difference
    finished: bulk_delta.Finished | None = None  # that reading's lists, built when asked


def validate(feed: FeedConfig, data: Payloads, policy: Policy, key: str, *, lines: bool,
             before: Digest | None = None, read: tuple[str, ...] | None = None,
             before_text: str | None = None
             ) -> tuple[Digest, tuple[str, ...], tuple[GuardReject, ...]]:
    """(digest, provenance lines if `lines`, every guard reject) of a feed `applies` accepts;
    FormatError past the feed's max_reject_ratio, as parse_payloads raises it. `before`: the
    result of the previous copy of a one-payload feed, to read this one by difference
    (agent.bulk_delta), and `before_text`, that copy's text as `texts` reads it, when at hand
    (it is then compared in order). `read`: the payloads' `texts`, when the caller has them
    already."""
    out = _Feed()
    clear = policy.clear_first_octets()
    single = len(data.payloads) == 1
    with collector_paused():
        found = read if read is not None else texts(data)
        assert found is not None, "bulk.validate of payloads bulk.applies refuses"
        for (path, _, _), text in zip(data.payloads, found, strict=True):
            _payload(out, path, text, feed.subdomains, policy, clear, lines,
                     before if single else None, before_text if single else None)
            if out.accepted + len(out.refused) > feed.max_indicators:  # as parse_payloads
                raise too_many(feed, out.accepted + len(out.refused), path)
    total = out.accepted + len(out.refused) + len(out.rejects)  # read: kept, refused, malformed
    check_reject_ratio(feed, out.rejects, total)
    expired = [g.indicator.expires for g in out.refused
               if g.reason == EXPIRED and g.indicator.expires is not None]
    values: Mapping[str, list[str]] | Callable[[], Mapping[str, list[str]]]
    if out.finished is not None:  # bulk_delta made them unique
        values, plain = _later(out.columns, out.finished), out.plain
        sizes = {**{kind: len(v) for kind, v in out.columns.items()}, **out.finished.sizes}
    elif single:
        values, plain = _unique(out.columns, out.scanned)
        sizes = {kind: len(v) for kind, v in values.items()}
    else:
        values = {kind: list(dict.fromkeys(found)) for kind, found in out.columns.items()}
        sizes = {kind: len(v) for kind, v in values.items()}
        plain = None
    counts: dict[str, int] = {}
    for g in out.refused:
        counts[g.reason] = counts.get(g.reason, 0) + 1
    summary = Summary(
        key=key, accepted=out.accepted, parsed=total, parse_rejects=len(out.rejects),
        reject_samples=tuple(out.rejects[:SAMPLE]), guard_counts=counts,
        guard_samples=tuple(out.refused[:SAMPLE]), extras=tuple(dict.fromkeys(out.extras)),
        valid_from=max(expired) if expired else None, valid_until=out.until,
        counts=sizes)
    # the next copy is read by difference when a few rows are special (bulk_delta.MAX_SHARE)
    special = (tuple(out.special) if single and len(out.special) <= bulk_delta.MAX_SHARE
               * max(total, 1) else None)
    return (Digest(summary, values, special=special, plain=plain, change=out.change,
                   known=out.known, special_lines=tuple(out.special_lines)),
            tuple(out.index), tuple(out.refused))


def _later(columns: Mapping[str, list[str]], finished: bulk_delta.Finished
           ) -> Callable[[], Mapping[str, list[str]]]:
    """The lists of a reading by difference, "v4" and the names built when first asked."""
    def load() -> Mapping[str, list[str]]:
        return {**columns, **finished.lists()}
    return load


def _unique(columns: dict[str, list[str]], scanned: dict[str, int]
            ) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each list without repeats, the values the scan took as they are (the plain rows) at its
    head: (values, how many of them head each list of `scanned`), as Digest.plain says."""
    values: dict[str, list[str]] = {}
    marks: dict[str, int] = {}
    for kind, found in columns.items():
        n = scanned.get(kind, 0)
        head = dict.fromkeys(found[:n])
        values[kind] = [*head, *(v for v in dict.fromkeys(found[n:]) if v not in head)]
        if kind in scanned:
            marks[kind] = len(head)
    return values, marks


def _payload(out: _Feed, path: str, text: str, subdomains: bool, policy: Policy,
             clear: frozenset[str], lines: bool, before: Digest | None,
             before_text: str | None) -> None:
    rows = _rows(text)
    kind = "wild" if subdomains else "names"
    names, v4 = out.columns[kind], out.columns["v4"]
    clear_octet = bytes(str(o) in clear for o in range(256))
    scan = functools.partial(_scan, clear_octet=clear_octet,
                             name_suspect=policy.name_suspect_test(), subdomains=subdomains)
    shift = (bulk_delta.by_difference(rows, before, kind, None if before_text is None
                                      else _rows(before_text))
             if before is not None else None)
    if shift is None:  # every row is scanned
        odd, suspects = scan(enumerate(rows), v4, names)
    else:  # the rows that were not plain rows of the previous copy
        odd, suspects = scan(((i, rows[i]) for i in shift.scan), v4, names)
    out.scanned = {"v4": len(v4), kind: len(names)}
    verdict: dict[int, tuple[str, str]] = {}  # the odd lines that hold one: value, flag
    refused: list[tuple[int, GuardReject]] = []
    for i in suspects:
        row = rows[i]
        ind = (Indicator(IPV4, row, False, None, str(i + 1)) if "0" <= row[-1] <= "9"
               else Indicator(DOMAIN, row, subdomains, None, str(i + 1)))
        bad = policy.check_one(ind)
        if bad is not None:
            refused.append((i, bad))
        else:
            (v4 if ind.type == IPV4 else names).append(row)
    known = (before.known or {}) if shift is not None and before is not None else {}
    malformed = _odd_lines(out, path, rows, odd, verdict, refused, subdomains, policy, known)
    refused.sort(key=lambda item: item[0])
    out.refused.extend(g for _, g in refused)
    out.accepted += len(rows) - rows.count("") - malformed - len(refused)
    out.special_lines = sorted([*odd, *suspects])
    out.special = [rows[i] for i in out.special_lines]
    if shift is not None:
        out.finished = shift.finish(rows, out.columns, out.scanned, out.special)
        out.change, out.plain = out.finished.change, out.finished.marks
    if lines:
        _index(out, path, odd, verdict, subdomains)


def _rows(text: str) -> list[str]:
    return (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")


def _scan(rows: Iterable[tuple[int, str]], v4: list[str], names: list[str], *,
          clear_octet: bytes, name_suspect: Callable[[str, bool], bool], subdomains: bool
          ) -> tuple[list[int], list[int]]:
    """The canonical rows far from what the guards protect go to `v4` and `names` as they
    are; (odd, suspects): the lines to normalize, and the canonical values the guards must
    look at one by one."""
    odd: list[int] = []
    suspects: list[int] = []
    pton = _pton
    for i, row in rows:
        if not row:
            continue
        last = row[-1]
        # indicators.canonical_kind, written out: this loop runs for every row of every feed
        if "0" <= last <= "9":  # a dotted quad, if inet_pton takes it (as normalize asks)
            try:
                packed = pton(_AF_INET, row)
            except OSError:
                odd.append(i)
                continue
            if clear_octet[packed[0]]:
                v4.append(row)
            else:
                suspects.append(i)
        elif (not row.strip(_HOST_CHARS) and ".." not in row and ".-" not in row
              and "-." not in row and row[0] not in ".-" and last not in ".-"
              and (len(row) <= 63 or (len(row) <= 253 and _name(row)))
              and not row.startswith("hxxp")):  # HOSTNAME_RE, in C string operations
            if name_suspect(row, subdomains):
                suspects.append(i)
            else:
                names.append(row)
        else:
            odd.append(i)
    return odd, suspects


def _odd_lines(out: _Feed, path: str, rows: list[str], odd: list[int],
               verdict: dict[int, tuple[str, str]], refused: list[tuple[int, GuardReject]],
               subdomains: bool, policy: Policy, known: Mapping[str, tuple[str, str, str]]
               ) -> int:
    """The lines that are not canonical values, normalized and checked one by one (unless
    `known`: the previous result's verdict on that very row, the same under the same inputs);
    how many of them are malformed."""
    found: list[Indicator] = []
    rejects: list[Reject] = []
    for i in odd:
        row = rows[i]
        hit = known.get(row)
        if hit is not None:
            column, value, flag = hit
            out.columns[column].append(value)
            verdict[i] = (value, flag)
            out.known[row] = hit
            continue
        before = len(found)
        try_normalize(row, str(i + 1), found, rejects)
        if len(found) > before:
            ind = found[-1]
            if subdomains and ind.type == DOMAIN and not ind.subdomains:
                ind = found[-1] = ind._replace(subdomains=True)
            verdict[i] = (ind.value, ind.flag)
            bad = policy.check_one(ind)
            if bad is not None:
                refused.append((i, bad))
                continue
            kind = kind_of(ind)
            if kind is None:
                out.extras.append(ind._replace(ref=""))
                if ind.expires is not None and (out.until is None or ind.expires < out.until):
                    out.until = ind.expires
            else:
                out.columns[kind].append(ind.value)
                out.known[row] = (kind, ind.value, ind.flag)
    out.rejects.extend(r._replace(ref=f"{path}:{r.ref}") for r in finish([], rejects).rejects)
    return len(odd) - len(verdict)


def _index(out: _Feed, path: str, odd: list[int], verdict: dict[int, tuple[str, str]],
           subdomains: bool) -> None:
    """Provenance lines as parse_payloads writes them, except for the canonical rows: one
    marker line stands for them all (agent.state.feeds.CachedFeed.index_lines rebuilds their
    entries from the payload), so a feed of a million plain values indexes in no time."""
    index = out.index
    index.append(f"{CANONICAL_MARK}\t{'*' if subdomains else ''}\t{path}\n")
    for i in odd:
        held = verdict.get(i)
        if held is not None:
            index.append(f"{held[0]}\t{held[1]}\t{path}:{i + 1}\n")
