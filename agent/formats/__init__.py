"""Feed format parsers: bytes of a verified payload in, normalized indicators and rejects out.

`parse()` is the only entry the pipeline needs. Decoding (UTF-8, BOM, CRLF, bad bytes) is done
once here and in `_common`; each module handles one publisher family. A payload that cannot be
read as its format at all raises FormatError; anything smaller is a per-line or per-object Reject,
so that one bad line never costs the whole feed.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable

from agent.errors import FormatError
from agent.formats._common import decode
from agent.formats._sniff import sniff
from agent.formats.abusech import parse_feodo, parse_threatfox, parse_urlhaus
from agent.formats.misp import parse_misp_csv, parse_misp_json
from agent.formats.misp_attributes import parse_misp_attributes
from agent.formats.plain import parse_hosts, parse_plain
from agent.formats.rpz import parse_rpz
from agent.formats.spamhaus import parse_drop, parse_drop_json
from agent.formats.stix2 import parse_stix2
from agent.formats.warninglist import parse_warninglist
from agent.indicators import ParseResult
from agent.util.gcpause import collector_paused

log = logging.getLogger(__name__)
PARSERS: dict[str, Callable[[str], ParseResult]] = {
    "plain": parse_plain,
    "hosts": parse_hosts,
    "spamhaus-drop": parse_drop,
    "spamhaus-json": parse_drop_json,
    "feodo-csv": parse_feodo,
    "threatfox-csv": parse_threatfox,
    "urlhaus-csv": parse_urlhaus,
    "misp-csv": parse_misp_csv,
    "misp-json": parse_misp_json,
    "stix2": parse_stix2,
    "rpz": parse_rpz,
    "misp-warninglist": parse_warninglist,
    # MISP's API and feed-directory JSON with provenance; produced by `source: misp` and
    # `source: misp-feed` (agent.fetch), not a `format:` of the configuration
    "misp-attributes": parse_misp_attributes,
}
# what `format:` and `parse --format` accept; misp-attributes is the API sources' own
FORMAT_NAMES: tuple[str, ...] = tuple(name for name in PARSERS if name != "misp-attributes")

__all__ = ["FORMAT_NAMES", "parse", "sniff"]


def parse(data: bytes, fmt: str = "auto") -> ParseResult:
    """Parse a payload as `fmt`, or as what `sniff()` finds when fmt is "auto"."""
    try:
        if fmt == "auto":
            fmt = sniff(data)
        parser = PARSERS.get(fmt)
        if parser is None:
            raise FormatError(
                f"unknown feed format {fmt!r}", reason="format",
                hint=f"use one of: auto, {', '.join(FORMAT_NAMES)}",
            )
        with collector_paused():
            return parser(decode(data))
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError,
            csv.Error) as exc:
        # what a parser did not foresee (a bare CR in a CSV header, a 5000-digit number, a
        # document nested 100k deep) refuses this payload, never the whole sync
        log.warning("%s parser: unforeseen input", fmt, exc_info=exc)
        raise FormatError(
            f"the payload cannot be read as {fmt}: {type(exc).__name__}: {str(exc)[:160]}",
            reason="format-unreadable",
            hint="the payload is damaged or not in the declared format; the last good copy "
            "stays enforced. Check `blocklist-agent parse` on the file") from None


