"""CSV tables as published by abuse.ch and MISP: `#` comment lines, a header found by its columns.

abuse.ch puts its header inside a comment (`# "first_seen_utc","dst_ip",...`) under a banner and
ends with a `# Number of entries` comment; MISP writes a bare header line. Both are found the same
way: the first line, commented or not, that holds the columns the parser needs. Columns are then
addressed by name, so a publisher adding a column does not shift the values.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator
from typing import NamedTuple

from agent.errors import FormatError
from agent.formats._common import clip
from agent.indicators import Reject


class Table(NamedTuple):
    columns: dict[str, int]  # lowercase header name -> index (first occurrence wins)
    rows: Iterator[tuple[str, list[str]]]  # (line number where the row starts, fields)


HeaderTest = Callable[[set[str]], bool]


def has_columns(*names: str) -> HeaderTest:
    """A header test that needs all these column names."""
    wanted = set(names)
    return lambda fields: wanted <= fields


def header_fields(line: str) -> list[str]:
    """The column names of a header line, commented or not, lowercased."""
    body = line.strip().lstrip("#").strip()
    if not body:
        return []
    fields = next(csv.reader([body], skipinitialspace=True), [])
    return [field.strip().lower() for field in fields]


def read_csv(lines: list[str], accept: HeaderTest, what: str, rejects: list[Reject]) -> Table:
    """Find the header, then read the rows below it; a CSV without its header is FormatError.

    Short or long rows and rows the csv module cannot read become rejects appended to `rejects`.
    """
    for index, line in enumerate(lines):
        text = line.strip()
        if not text:
            continue
        names = header_fields(text)
        if accept(set(names)):
            columns: dict[str, int] = {}
            for position, name in enumerate(names):
                columns.setdefault(name, position)
            return Table(columns, _rows(lines, index + 1, len(names), rejects))
        if not text.startswith("#"):
            break
    raise FormatError(
        f"no {what} header line found", reason="format",
        hint=f"the payload does not look like a {what} export; check the feed URL and format",
    )


def _rows(lines: list[str], start: int, width: int, rejects: list[Reject]) -> Iterator[
    tuple[str, list[str]]
]:
    # Comment lines are blanked rather than dropped so that csv's line count stays the file's; the
    # "\n" is given back so that a quoted field spanning lines keeps its newline (and is rejected).
    feed = ("" if line.lstrip()[:1] == "#" else line + "\n"
            for line in itertools.islice(lines, start, None))
    reader = csv.reader(feed, skipinitialspace=True)
    done = 0
    while True:
        ref = str(start + done + 1)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            done = reader.line_num
            rejects.append(Reject(ref, f"unreadable CSV row: {exc}"))
            continue
        done = reader.line_num
        if not row or row == [""]:
            continue
        if len(row) != width:
            text = clip(",".join(row))
            rejects.append(Reject(ref, f"expected {width} columns, found {len(row)}", text))
            continue
        yield ref, row
