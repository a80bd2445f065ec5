"""The values of a configuration: text, numbers, durations, sizes, paths, addresses and names,
each read from its node with the problem reported at its line (see nodes.py).

Text is taken as written: `table: 2024` is the text "2024" and `name: no` the text "no", because
operators do not think in YAML 1.1 types.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable

import yaml
from yaml.nodes import Node, ScalarNode

from agent.config.nodes import BOOL, FLOAT, INT, STR, TAG, NodeReader, describe, is_null
from agent.config.perms import STRICT_HINT, strict_problem
from agent.config.units import (
    DURATION_HINT,
    MAX_DURATION,
    SIZE_HINT,
    parse_duration,
    parse_size,
)
from agent.indicators import InvalidValue, normalize_domain, normalize_ip

# Tags whose plain text is taken as written where text is expected (`table: 2024`, a date).
_TEXTUAL = frozenset({STR, INT, FLOAT, BOOL, TAG + "timestamp"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

_ADDRESS_HINT = "write an address (192.0.2.1, 2001:db8::1) or a network (192.0.2.0/24)"
_NAME_OR_ADDRESS_HINT = "write an address, a network (192.0.2.0/24) or a domain name (example.fr)"

# Why a text is refused (the hint shown), or None when it is accepted.
WhyNot = Callable[[str], str | None]


def pattern(regex: re.Pattern[str], hint: str) -> WhyNot:
    """A WhyNot for texts that must match `regex` in full."""
    return lambda value: None if regex.fullmatch(value) else hint


def canonical_address_or_name(text: str, *, wildcard: bool = False) -> str:
    """Canonical address, network or domain name; the same decision rule as `indicators.normalize`.

    With `wildcard`, a leading "*." or "." is accepted and dropped (guards.protected: names there
    cover their subdomains anyway). Elsewhere it is refused: a name to resolve or to redirect to
    must be one name.
    """
    token = text
    if token.startswith(("*.", ".")):
        if not wildcard:
            raise InvalidValue(f"a wildcard is not a single name: {text}")
        token = token[2:] if token.startswith("*.") else token[1:]
    if token[:1].isdigit() or ":" in token or "/" in token:
        try:
            value = normalize_ip(token)[1]
        except InvalidValue:
            if ":" in token or "/" in token:
                raise
        else:
            if token != text:
                raise InvalidValue(f"wildcard on an address: {text}")
            return value
    return normalize_domain(token)


class ValueReader(NodeReader):
    """Reads one value of each kind; None means the problem was reported."""

    def __init__(self, file: str, base_dir: str) -> None:
        super().__init__(file)
        self.base_dir = base_dir  # where relative paths start: the configuration's directory
        self._constructor = yaml.constructor.SafeConstructor()

    def text(self, node: Node, path: str, optional: bool = False) -> str | None:
        """Text as written (surrounding spaces removed); numbers and booleans are taken literally.

        `table: 2024` means the text "2024", not a number; `name: no` means "no", not false.
        Control characters and line breaks are refused everywhere: values end up in nft scripts,
        zone files and command lines.
        """
        if optional and is_null(node):
            return None
        if not isinstance(node, ScalarNode) or node.tag not in _TEXTUAL:
            hint = "write a value, or remove the key to use the default" if is_null(node) \
                else "write a single value"
            self.report(node, path, f"expected text, found {describe(node)}", hint=hint)
            return None
        value = str(node.value).strip()
        if not value:
            self.report(node, path, "empty value",
                        hint="write a value, or remove the key to use the default")
            return None
        if _CONTROL_CHARS.search(value):
            self.report(node, path, "contains a line break or control character", value,
                        hint="write the value on one line")
            return None
        return value

    def checked(self, node: Node, path: str, problem: str, why_not: WhyNot) -> str | None:
        """Text that `why_not` accepts; otherwise reported as `problem (value) — why not`."""
        value = self.text(node, path)
        if value is None:
            return None
        hint = why_not(value)
        if hint is not None:
            self.report(node, path, problem, value, hint=hint)
            return None
        return value

    def verbatim(self, node: Node, path: str) -> str | None:
        """Text exactly as written, spaces kept and nothing else checked: the caller's rule."""
        if not isinstance(node, ScalarNode) or node.tag not in _TEXTUAL:
            self.report(node, path, f"expected text, found {describe(node)}")
            return None
        return str(node.value)

    def integer(self, node: Node, path: str, low: int, high: int) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != INT:
            self.report(node, path, f"expected a whole number, found {describe(node)}",
                        hint=f"write a number from {low} to {high}")
            return None
        value = self._constructor.construct_yaml_int(node)
        if not low <= value <= high:
            self.report(node, path, f"must be from {low} to {high}", value)
            return None
        return value

    def ratio(self, node: Node, path: str, *, zero_ok: bool) -> float | None:
        """A fraction: 0.5 means 50 %. `zero_ok` decides whether 0 itself is allowed."""
        if not isinstance(node, ScalarNode) or node.tag not in (INT, FLOAT):
            self.report(node, path, f"expected a number, found {describe(node)}",
                        hint="write a fraction such as 0.5 for 50 %")
            return None
        if node.tag == INT:
            value = float(self._constructor.construct_yaml_int(node))
        else:
            value = self._constructor.construct_yaml_float(node)
        interval = "from 0 to 1" if zero_ok else "above 0 and at most 1"
        in_range = 0.0 <= value <= 1.0 if zero_ok else 0.0 < value <= 1.0
        if not in_range or not math.isfinite(value):
            self.report(node, path, f"must be {interval}", node.value,
                        hint="a fraction: 0.5 means 50 %")
            return None
        return value

    def boolean(self, node: Node, path: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.tag != BOOL:
            self.report(node, path, f"expected true or false, found {describe(node)}")
            return None
        return self._constructor.construct_yaml_bool(node)

    def _unit(self, node: Node, path: str, kind: str, hint: str,
              parse: Callable[[str], int]) -> tuple[str, int] | None:
        """(text as written, value), or None once reported."""
        # The raw text, so that YAML 1.1's sexagesimal "1:30" (= 90) is not silently accepted.
        if not isinstance(node, ScalarNode) or node.tag not in (STR, INT):
            self.report(node, path, f"expected a {kind}, found {describe(node)}", hint=hint)
            return None
        raw = str(node.value).strip()
        try:
            return raw, parse(raw)
        except ValueError as exc:
            self.report(node, path, str(exc))
            return None

    def duration(self, node: Node, path: str, minimum: int = 0,
                 maximum: int = MAX_DURATION) -> int | None:
        read = self._unit(node, path, "duration", DURATION_HINT, parse_duration)
        if read is None:
            return None
        raw, seconds = read
        if seconds < minimum:
            self.report(node, path, f"too short, the minimum is {minimum}s", raw)
            return None
        if seconds > maximum:
            self.report(node, path, f"too long, the maximum is {maximum}s", raw)
            return None
        return seconds

    def size(self, node: Node, path: str) -> int | None:
        read = self._unit(node, path, "size", SIZE_HINT, parse_size)
        if read is None:
            return None
        raw, value = read
        if value <= 0:
            self.report(node, path, "must be more than 0 bytes", raw, hint=SIZE_HINT)
            return None
        return value

    def choice(self, node: Node, path: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node, path)
        if value is None:
            return None
        if value not in choices:
            self.report(node, path, "not one of " + ", ".join(choices), value,
                        hint=self._did_you_mean(value, choices))
            return None
        return value

    @staticmethod
    def _did_you_mean(value: str, choices: tuple[str, ...]) -> str:
        lower = value.lower()
        close = difflib.get_close_matches(lower, choices, n=1, cutoff=0.6)
        close = close or [choice for choice in choices if choice.startswith(lower)][:1]
        return f"did you mean '{close[0]}'?" if close else ""

    def file_path(self, node: Node, path: str, optional: bool = False) -> str | None:
        """A path; a relative one is taken from the configuration file's directory."""
        value = self.text(node, path, optional=optional)
        if value is None:
            return None
        if value.startswith("~"):
            self.report(node, path, "'~' is not expanded here", value,
                        hint="write the full path, e.g. /var/lib/blocklist-agent")
            return None
        return self.resolve(value)

    def trusted_file(self, node: Node, path: str, optional: bool = False) -> str | None:
        """A path the agent reads and acts on (keys, CA, local_dir): as root, only one that
        only root can change (agent/config/perms.py)."""
        value = self.file_path(node, path, optional=optional)
        if value is None:
            return None
        problem = strict_problem(value)
        if problem is not None:
            self.report(node, path, f"refused: {problem}", hint=STRICT_HINT)
            return None
        return value

    def resolve(self, value: str) -> str:
        return os.path.normpath(os.path.join(self.base_dir, value))

    def address(self, node: Node, path: str) -> str | None:
        value = self.text(node, path)
        if value is None:
            return None
        try:
            return normalize_ip(value)[1]
        except InvalidValue as exc:
            self.report(node, path, str(exc), hint=_ADDRESS_HINT)
            return None

    def address_or_name(self, node: Node, path: str, wildcard: bool = False) -> str | None:
        value = self.text(node, path)
        if value is None:
            return None
        try:
            return canonical_address_or_name(value, wildcard=wildcard)
        except InvalidValue as exc:
            self.report(node, path, str(exc), hint=_NAME_OR_ADDRESS_HINT)
            return None
