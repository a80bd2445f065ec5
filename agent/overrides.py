"""Local allow/deny overrides: the hospital's own word, kept as small text files in `local_dir`.

Files ending in `.allow` or `.deny`, one entry a line, so a sysadmin can also write them by hand
or from configuration management:

    VALUE [expires=2026-11-24T03:00:00Z] [by=alice] [added=2026-11-23T15:00:00Z] [# reason]

`blocklist-agent allow|deny|unallow` manage `cli.allow` and `cli.deny` in the same format,
atomically. An allow wins over every feed (and is rendered as `rpz-passthru.`); a deny is
enforced like a feed entry and passes the same guard rails.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from agent.errors import contained
from agent.indicators import Indicator, InvalidValue, Reject, normalize
from agent.util.fsutil import atomic_write
from agent.util.timefmt import iso_z

ALLOW = "allow"
DENY = "deny"
CLI_FILE = {ALLOW: "cli.allow", DENY: "cli.deny"}
_HEADER = (
    "# blocklist-agent local overrides, one entry a line:\n"
    "#   VALUE [expires=ISO-8601] [by=USER] [added=ISO-8601] [# reason]\n"
    "# Managed by `blocklist-agent allow|deny|unallow`; hand edits are kept.\n"
)


class Override(NamedTuple):
    action: str  # "allow" | "deny"
    indicator: Indicator
    reason: str
    author: str
    added: int | None
    expires: int | None
    where: str  # "file:line"

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action, "value": self.indicator.value,
            "subdomains": self.indicator.subdomains, "reason": self.reason,
            "by": self.author, "added": iso(self.added), "expires": iso(self.expires),
            "where": self.where,
        }


class Overrides(NamedTuple):
    allow: tuple[Override, ...]
    deny: tuple[Override, ...]
    rejects: tuple[Reject, ...]
    expired: tuple[Override, ...]

    @classmethod
    def empty(cls) -> Overrides:
        return cls((), (), (), ())


def iso(ts: int | None) -> str | None:
    return None if ts is None else iso_z(ts)


def parse_iso(text: str) -> int:
    """Parse a UTC timestamp as written in override files and manifests ("...Z")."""
    text = text.strip().replace("+00:00", "Z")
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    raise ValueError(f"not a UTC timestamp like 2026-11-24T03:00:00Z: {text!r}")


def parse_line(line: str, action: str, where: str) -> Override | None:
    """One override line, or None for blanks and comments. Raises InvalidValue."""
    body, _, comment = line.partition("#")
    words = body.split()
    if not words:
        return None
    attrs: dict[str, str] = {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq or key not in ("expires", "by", "added"):
            raise InvalidValue(f"unexpected word {word!r}; write key=value with expires, by, added")
        attrs[key] = value
    try:
        expires = parse_iso(attrs["expires"]) if "expires" in attrs else None
        added = parse_iso(attrs["added"]) if "added" in attrs else None
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None
    ind = normalize(words[0], ref=where, expires=expires)
    return Override(action, ind, comment.strip(), attrs.get("by", ""), added, expires, where)


def parse_text(text: str, action: str, name: str, now: int) -> Overrides:
    entries: list[Override] = []
    expired: list[Override] = []
    rejects: list[Reject] = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        try:
            entry = parse_line(line, action, where)
        except ValueError as exc:  # InvalidValue, and what a normalizer did not foresee
            rejects.append(Reject(where, str(exc)[:200] or type(exc).__name__,
                                  line.strip()[:80]))
            continue
        if entry is None:
            continue
        if entry.expires is not None and entry.expires <= now:
            expired.append(entry)
        else:
            entries.append(entry)
    allow = tuple(entries) if action == ALLOW else ()
    deny = tuple(entries) if action == DENY else ()
    return Overrides(allow, deny, tuple(rejects), tuple(expired))


def load(local_dir: str | Path, now: int | None = None) -> Overrides:
    """Read every *.allow and *.deny file; a missing directory means no overrides.

    Each file on its own: one that cannot be read (or that trips an unforeseen fault) is one
    reject naming the file, and every other file still applies, as do the feeds.
    """
    now = int(time.time()) if now is None else now
    directory = Path(local_dir)
    parts: list[Overrides] = []
    try:
        paths = sorted(directory.iterdir()) if directory.is_dir() else []
    except OSError as exc:
        return Overrides((), (), (Reject(str(directory), f"cannot list the directory: "
                                         f"{exc.strerror or exc}"),), ())
    for path in paths:
        action = {".allow": ALLOW, ".deny": DENY}.get(path.suffix)
        if action is None or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            parts.append(parse_text(text, action, str(path), now))
        except OSError as exc:
            parts.append(Overrides((), (), (Reject(
                str(path), f"cannot read override file: {exc.strerror or exc}; fix its "
                "permissions or remove it"),), ()))
        except Exception as exc:
            error = contained(exc, stage="reading local overrides", where=str(path),
                              keep="the other override files still apply")
            parts.append(Overrides((), (), (Reject(str(path), error.what),), ()))
    return Overrides(
        tuple(e for p in parts for e in p.allow), tuple(e for p in parts for e in p.deny),
        tuple(r for p in parts for r in p.rejects), tuple(e for p in parts for e in p.expired),
    )


def format_entry(value: str, *, reason: str, author: str, added: int, expires: int | None) -> str:
    words = [value]
    if expires is not None:
        words.append(f"expires={iso(expires)}")
    if author:
        words.append(f"by={author.replace(' ', '_')}")
    words.append(f"added={iso(added)}")
    line = " ".join(words)
    reason = " ".join(reason.split())
    return f"{line} # {reason}" if reason else line


def add(
    local_dir: str | Path, action: str, value: str, *, reason: str, author: str,
    expires: int | None, now: int,
) -> Override:
    """Append (or replace) VALUE in cli.ACTION; the previous entry for the same value is dropped."""
    ind = normalize(value)  # InvalidValue reaches the CLI as a usage error
    shown = f"*.{ind.value}" if ind.subdomains else ind.value
    path = Path(local_dir) / CLI_FILE[action]
    lines = _other_lines(path, ind)
    lines.append(format_entry(shown, reason=reason, author=author, added=now, expires=expires))
    _write(path, lines)
    entry = parse_line(lines[-1], action, f"{path}:{len(lines)}")
    assert entry is not None
    return entry


def remove(local_dir: str | Path, action: str, value: str) -> tuple[int, list[str]]:
    """Remove VALUE from cli.ACTION. Returns (how many removed, places in other files)."""
    ind = normalize(value)
    path = Path(local_dir) / CLI_FILE[action]
    kept = _other_lines(path, ind)
    removed = sum(1 for line in _read_lines(path) if _names(line, ind))
    if removed:
        _write(path, kept)
    elsewhere = [
        e.where for e in _entries(load(local_dir, now=0), action)
        if e.indicator.value == ind.value and not e.where.startswith(f"{path}:")
    ]
    return removed, elsewhere


def _entries(ov: Overrides, action: str) -> Sequence[Override]:
    return ov.allow if action == ALLOW else ov.deny


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _other_lines(path: Path, ind: Indicator) -> list[str]:
    """The file's lines without the entries for `ind` (and without the managed header)."""
    out: list[str] = []
    for line in _read_lines(path):
        if line.startswith("# ") and line + "\n" in _HEADER:
            continue
        if not _names(line, ind):
            out.append(line)
    return out


def _names(line: str, ind: Indicator) -> bool:
    """Is this line an entry for the same value as `ind`?"""
    words = line.partition("#")[0].split()
    if not words:
        return False
    try:
        return normalize(words[0]).value == ind.value
    except InvalidValue:
        return False


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (_HEADER + "".join(line + "\n" for line in lines)).encode())
