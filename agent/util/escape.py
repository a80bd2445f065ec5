"""Text from the network or a feed, made safe to show: the one escaping rule of every output.

An HTTP reason phrase, a Location header, a manifest's publisher or a feed's line is chosen by
whoever controls the server or the path to it (an http:// feed is open to anyone on the way). Shown
raw, an escape sequence repaints the operator's terminal (a fake green "all good" over a refusal),
a line break forges a log line or a "what to do:" line, and a bidirectional override makes a value
read backwards. So every such string goes through `shown` before it reaches `status`, `why`, the
logs, the journal or systemd's STATUS=, and the error type applies it once more to whatever it
prints, so a path that forgot is still covered.
"""

from __future__ import annotations

import logging
import re

# C0 controls, DEL, C1 controls; the Unicode format characters that reorder or hide text (bidi
# embeddings, overrides and isolates, zero-width characters, the BOM); line and paragraph
# separators, which some terminals and log viewers treat as line breaks.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_KEEP_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object, *, newlines: bool = False) -> str:
    """`text` with every control and invisible formatting character written as an escape.

    `newlines=True` keeps line breaks: for the agent's own multi-line messages, whose parts from
    the network were escaped (without that flag) when the message was made.
    """
    value = text if isinstance(text, str) else str(text)
    pattern = _UNSAFE_KEEP_NEWLINE if newlines else _UNSAFE
    return pattern.sub(_escape, value) if pattern.search(value) else value


def has_unsafe(text: str) -> bool:
    """Would `shown` change `text`? (for fields that must be refused rather than escaped)"""
    return _UNSAFE.search(text) is not None


class SafeRecords(logging.Filter):
    """A handler filter escaping every log line once it is formatted: the logs are a sink too.

    The agent's own line breaks are kept (a journal entry may hold several lines); arguments are
    merged into the message first, so a value passed as `%s` is escaped like the rest.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = shown(message, newlines=True)
        if safe != message or record.args:
            record.msg, record.args = safe, None
        return True


def protect_handlers(logger: logging.Logger) -> None:
    """Escape what every handler of `logger` writes (idempotent)."""
    for handler in logger.handlers:
        if not any(isinstance(f, SafeRecords) for f in handler.filters):
            handler.addFilter(SafeRecords())
