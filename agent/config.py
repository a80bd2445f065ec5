"""The configuration: one YAML file (design section 4) turned into immutable, validated values.

Operators' files and runbooks rely on these key names: extend, never rename. Unknown keys are
errors because a typo ("trusted_key") must not silently switch protection off.

`load()` reports every problem of a file at once, each as `FILE:LINE: KEY.PATH: problem (value)
— hint`, because the person fixing it may be on call at night with a gateway that refuses to
start. Line numbers come from the YAML node tree (`yaml.compose`), which is also where duplicate
keys are caught: PyYAML's loader would silently keep the last one.

Lists become tuples and sub-sections frozen dataclasses, so a Config can be shared between threads
and compared with the previous one on reload. Relative paths are resolved against the directory of
the configuration file. Nothing here touches the network: a feed server that is down must not
keep the agent from starting with its last good copy.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.errors import ConfigError
from agent.indicators import InvalidValue, normalize_domain, normalize_ip

DEFAULT_CONFIG_PATH = "/etc/blocklist-agent/agent.yaml"
DEFAULT_STATE_DIR = "/var/lib/blocklist-agent"
DEFAULT_LOCAL_DIR = "/etc/blocklist-agent/local.d"

FEED_FORMATS = (
    "manifest", "auto", "plain", "hosts", "spamhaus-drop", "spamhaus-json", "feodo-csv",
    "threatfox-csv", "urlhaus-csv", "misp-csv", "misp-json", "stix2", "rpz",
)


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str
    trusted_keys: tuple[str, ...] = ()
    refresh: int = 900  # seconds
    max_size: int = 256 * 1024 * 1024  # bytes
    format: str = "manifest"  # "manifest": a signed feed directory; otherwise one list file
    signature: str = "minisign"  # "minisign" | "none"
    subdomains: bool = False  # treat every name of this feed as covering its subdomains
    max_reject_ratio: float = 0.2  # more malformed lines than this: the whole update is refused
    timeout: int = 30  # seconds, per HTTP request
    mirrors: tuple[str, ...] = ()  # other URLs of the same feed, tried in order after `url`
    ca_file: str | None = None  # extra CA bundle for https (a private PKI)
    line: int = 0  # where the feed is defined in the config file, for messages


@dataclass(frozen=True)
class GuardConfig:
    min_prefix_v4: int = 8
    min_prefix_v6: int = 32
    max_change: float = 0.5
    protected: tuple[str, ...] = ()  # CIDRs and names (names include their subdomains)
    allow_special: tuple[str, ...] = ()  # special-purpose ranges that may be blocked anyway


@dataclass(frozen=True)
class FirewallConfig:
    backend: str = "nftables"  # "nftables" | "none"
    table: str = "blocklist_agent"
    lan_interfaces: tuple[str, ...] = ()
    wan_interfaces: tuple[str, ...] = ()
    management: tuple[str, ...] = ()  # CIDRs never cut, not even by isolation
    offender_timeout: int = 86400  # seconds an internal host stays in the offenders set
    log_prefix: str = "blocklist-agent: "


@dataclass(frozen=True)
class DnsConfig:
    backend: str = "none"  # "unbound" | "bind" | "knot-resolver" | "dnsupdate" | "none"
    zone: str = "rpz.blocklist-agent."
    zonefile: str = "/var/lib/unbound/rpz.blocklist-agent.zone"
    action: str = "nxdomain"  # "nxdomain" | "nodata" | "drop" | "redirect:<ip>"
    # command prefix, e.g. "unbound-control -c /etc/unbound/unbound.conf"
    control: str | None = None
    server: str | None = None  # resolver or primary to query (host or host:port)
    tsig_key_file: str | None = None  # dnsupdate: BIND-style key file
    ttl: int = 300
    # command prefix checking a new zone file before it is served (ZONE FILE appended), e.g.
    # "named-checkzone"; default: named-checkzone for bind, only the agent's own check otherwise
    check: str | None = None
    # the resolver clients use, asked by `status` and `why` (host or host:port); default:
    # server, else 127.0.0.1
    resolver: str | None = None


@dataclass(frozen=True)
class IsolationConfig:
    allow: tuple[str, ...] = ()  # CIDRs and names kept reachable during isolation
    peers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, CIDRs) in file order
    allow_feeds: bool = False  # keep the configured feed servers reachable during isolation

    def peer(self, name: str) -> tuple[str, ...] | None:
        for peer_name, cidrs in self.peers:
            if peer_name == name:
                return cidrs
        return None


@dataclass(frozen=True)
class Config:
    path: str = DEFAULT_CONFIG_PATH
    state_dir: str = DEFAULT_STATE_DIR
    local_dir: str = DEFAULT_LOCAL_DIR
    feeds: tuple[FeedConfig, ...] = ()
    guards: GuardConfig = field(default_factory=GuardConfig)
    firewall: FirewallConfig = field(default_factory=FirewallConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    isolation: IsolationConfig = field(default_factory=IsolationConfig)
    metrics_file: str | None = None  # node_exporter textfile path

    def feed(self, name: str) -> FeedConfig | None:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        return None


# ---------------------------------------------------------------------------------------------
# Durations and sizes: shared with the command line (`--for 2h`, `--expires 7d`).

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(?:[0-9]+ *[smhdw] *)+")
_DURATION_PART = re.compile(r"([0-9]+) *([smhdw])")
_DIGITS = re.compile(r"[0-9]+")
# Longer than this is a typo, and would overflow time arithmetic (sleep, datetime) downstream.
MAX_DURATION = 100 * 365 * 86400
_DURATION_HINT = "write 30s, 15m, 2h or 7d"

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"([0-9]+) *([A-Za-z]*)")
_SIZE_HINT = "write 64KiB, 256MiB, 1GiB or a number of bytes"


def parse_duration(text: str | int) -> int:
    """Seconds from "30s", "15m", "2h", "7d", "1w", "1h30m" or a bare number of seconds.

    Units are lowercase only, so that "1M" (month? minute?) is refused rather than guessed. The
    ValueError message is complete, written for an operator: the CLI prints it as is.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"not a duration ({text!r}); {_DURATION_HINT}")
    if isinstance(text, int):
        seconds = text
    else:
        value = text.strip()
        if _DIGITS.fullmatch(value):
            seconds = int(value)
        elif _DURATION_RE.fullmatch(value):
            seconds = sum(
                int(number) * _DURATION_UNITS[unit]
                for number, unit in _DURATION_PART.findall(value)
            )
        else:
            raise ValueError(f"not a duration ({text!r}); {_DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative ({text!r}); {_DURATION_HINT}")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration longer than 100 years ({text!r}); {_DURATION_HINT}")
    return seconds


def parse_size(text: str | int) -> int:
    """Bytes from "64KiB", "256MiB", "1GiB" (powers of 1024), "10MB" (powers of 1000) or bytes.

    A bare "K", "M" or "G" is refused: whether it means 1000 or 1024 is exactly the kind of doubt
    that turns a size cap into a surprise.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"not a size ({text!r}); {_SIZE_HINT}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative ({text!r}); {_SIZE_HINT}")
        return text
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size ({text!r}); {_SIZE_HINT}")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}; {_SIZE_HINT}")
    return int(number) * factor


# ---------------------------------------------------------------------------------------------
# Loading.


class ConfigProblems(ConfigError):
    """Everything wrong with one configuration file, reported in one go.

    Fixing a file one error per restart is miserable at 3 a.m.; so the loader keeps going after
    the first problem and lists them all. `problems` holds one line per problem, each
    `FILE:LINE: KEY.PATH: problem (value) — hint`, for the CLI's `--json` output and for tests.
    """

    def __init__(self, path: str, problems: list[str], *, what: str = "",
                 hint: str = "") -> None:
        if not what:
            noun = "problem" if len(problems) == 1 else "problems"
            what = f"{len(problems)} {noun} in the configuration file:\n  " + "\n  ".join(
                problems)
            hint = hint or ("fix every line listed; no part of this file is used until all of "
                            "them are fixed")
        super().__init__(what, where=path, hint=hint)
        self.problems = problems


def load(path: str | Path) -> Config:
    """Read and validate the configuration file at `path`; raise ConfigError if it is not usable.

    The text is decoded as UTF-8 (a leading byte-order mark from a Windows editor is accepted).
    """
    name = str(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise _single(
            name, "no such configuration file",
            f"give the right path with -c (the default is {DEFAULT_CONFIG_PATH}); start from "
            "the annotated example agent.yaml shipped with the package",
        ) from None
    except IsADirectoryError:
        raise _single(name, "this is a directory, not a configuration file",
                      "give the path of the YAML file itself with -c") from None
    except PermissionError:
        raise _single(name, "permission denied while reading the configuration file",
                      "run the command as root, or make the file readable by the agent") from None
    except UnicodeDecodeError as exc:
        raise _single(name, f"not UTF-8 text (byte {exc.start})",
                      "save the file as UTF-8; it may be a binary file or another encoding") \
            from None
    except OSError as exc:
        raise _single(name, f"cannot read the configuration file: {exc.strerror or exc}",
                      "check that the file exists and is readable") from None
    return loads(text, name)


def loads(text: str, path: str = "<string>") -> Config:
    """Validate configuration text; `path` names it in messages and anchors relative paths.

    Relative paths in the file (state_dir, key files, …) are resolved against the directory of
    `path`, so that a configuration and its key files can be moved together (and tests can use a
    temporary directory); with the default "<string>" they are resolved against the current
    directory.
    """
    pseudo = path.startswith("<")  # "<string>", "<stdin>": no file to be relative to
    base_dir = os.getcwd() if pseudo else os.path.dirname(os.path.abspath(path))
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigProblems(path, [_yaml_problem(path, exc)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigProblems(path, [
            f"{path}:{line}: not valid YAML: character {exc.character!r} is not allowed — "
            "remove it (often a control character pasted from a terminal or a document)"
        ]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML parse error is one of above
        raise ConfigProblems(path, [f"{path}:1: not valid YAML: {exc}"]) from None
    reader = _Reader(path, base_dir)
    config = reader.config(root)
    if reader.problems:
        raise ConfigProblems(path, reader.sorted_problems())
    return config


def _single(path: str, problem: str, hint: str) -> ConfigProblems:
    """A problem with the file as a whole (it cannot be read): no line to point at."""
    return ConfigProblems(path, [f"{path}: {problem} — {hint}"], what=problem, hint=hint)


def _yaml_problem(path: str, exc: yaml.MarkedYAMLError) -> str:
    """One line for a YAML syntax error, with PyYAML's wording and our advice."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = exc.problem or exc.context or "syntax error"
    text = f"{path}:{line}: not valid YAML: {problem}"
    if exc.context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
        text += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
    if "'\\t'" in problem:
        hint = "YAML does not allow tabs for indentation; use spaces"
    elif "single document" in (exc.context or ""):
        hint = "the file must hold one YAML document: remove the '---' or '...' line"
    elif "alias" in problem:
        hint = "an alias (*name) needs an anchor (&name) defined above it"
    else:
        hint = ("check the indentation and the quoting on this line and the one above; quote "
                "values that contain ': ', ' #' or start with '*', '&', '!', '%', '@' or '`'")
    return f"{text} — {hint}"


# ---------------------------------------------------------------------------------------------
# The node-tree walker. It works on `yaml.compose()` nodes rather than on loaded Python values
# because only nodes remember their line, and because PyYAML's loader silently keeps the last of
# two duplicate keys: a second `signature:` in a feed must be an error, not a coin toss.

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE = _TAG + "merge"
# Tags whose plain text is taken as written where text is expected (`table: 2024`, a date).
_TEXTUAL = frozenset({_STR, _INT, _FLOAT, _BOOL, _TAG + "timestamp"})
_NO_VALUE = object()

_FEED_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_TABLE_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.+-]{1,15}")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# A minisign public key line: base64 of "Ed" + 8-byte key id + 32-byte key (56 characters).
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
# What the nft renderer accepts in a log prefix (it appends a word such as "drop-in "): checked
# here too, so that a bad prefix stops the file from loading instead of failing at apply time.
_LOG_PREFIX_RE = re.compile(r"[A-Za-z0-9 _:.\-]{0,50}")
_MAX_TTL = 2**31 - 1  # RFC 2181

SIGNATURES = ("minisign", "none")
FIREWALL_BACKENDS = ("nftables", "none")
DNS_BACKENDS = ("unbound", "bind", "knot-resolver", "dnsupdate", "none")
DNS_ACTIONS = ("nxdomain", "nodata", "drop", "redirect:<address or name>")
MIN_REFRESH = 60

_TOP_KEYS = tuple(f.name for f in fields(Config) if f.name != "path")
_FEED_KEYS = tuple(f.name for f in fields(FeedConfig) if f.name != "line")
_GUARD_KEYS = tuple(f.name for f in fields(GuardConfig))
_FIREWALL_KEYS = tuple(f.name for f in fields(FirewallConfig))
_DNS_KEYS = tuple(f.name for f in fields(DnsConfig))
_ISOLATION_KEYS = tuple(f.name for f in fields(IsolationConfig))

_ADDRESS_HINT = "write an address (192.0.2.1, 2001:db8::1) or a network (192.0.2.0/24)"
_NAME_OR_ADDRESS_HINT = "write an address, a network (192.0.2.0/24) or a domain name (example.fr)"


def _describe(node: Node) -> str:
    """What the operator wrote, in words, for "expected X, found Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping (key: value lines)"
    if isinstance(node, SequenceNode):
        return "a list"
    kinds = {_STR: "text", _INT: "a whole number", _FLOAT: "a number", _BOOL: "true/false",
             _NULL: "no value"}
    kind = kinds.get(node.tag, f"a value tagged {node.tag}")
    if node.tag == _NULL:
        return kind
    return f"{kind} ({_show(node.value)})"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _line(node: Node | None) -> int:
    if node is None or node.start_mark is None:
        return 1
    return int(node.start_mark.line) + 1


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _address_or_name(text: str, *, wildcard: bool = False) -> str:
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


class _Reader:
    """Turns the node tree into a Config, collecting every problem instead of stopping."""

    def __init__(self, file: str, base_dir: str) -> None:
        self.file = file
        self.base_dir = base_dir
        self.problems: list[tuple[int, str]] = []
        self._constructor = yaml.constructor.SafeConstructor()

    # -- reporting ------------------------------------------------------------------------

    def report(self, node: Node | None, path: str, problem: str, value: object = _NO_VALUE,
               hint: str = "") -> None:
        line = _line(node)
        text = f"{self.file}:{line}: "
        if path:
            text += f"{path}: "
        text += problem
        if value is not _NO_VALUE:
            text += f" ({_show(value)})"
        if hint:
            text += f" — {hint}"
        self.problems.append((line, text))

    def sorted_problems(self) -> list[str]:
        """In file order, so that the operator can walk down the file once."""
        return [text for _, text in sorted(self.problems, key=lambda item: item[0])]

    # -- structure ------------------------------------------------------------------------

    def _pairs(self, node: MappingNode, path: str, seen_merges: set[int]) -> list[
            tuple[str, Node, Node]]:
        """(key, key node, value node) with YAML merge keys (`<<: *defaults`) applied.

        Duplicate keys written in this mapping are reported here. Keys that come from a merge are
        overridden by keys written in the mapping itself, as YAML specifies.
        """
        explicit: list[tuple[str, Node, Node]] = []
        merged: list[tuple[str, Node, Node]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [
                    value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        self.report(key_node, path, "'<<' must merge a mapping (<<: *name)",
                                    hint="define the anchor on a mapping: name: &name {…}")
                        continue
                    if id(source) in seen_merges:
                        continue  # a mapping that merges itself; YAML itself would loop
                    seen_merges.add(id(source))
                    for item in self._pairs(source, path, seen_merges):
                        if all(item[0] != other[0] for other in merged):
                            merged.append(item)
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag == _NULL:
                self.report(key_node, path, "a key must be a plain word", hint="write key: value")
                continue
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            if key in first_line:
                self.report(key_node, dotted, f"duplicate key (also on line {first_line[key]})",
                            hint="YAML silently keeps only the last one; remove one of the two")
            first_line[key] = _line(key_node)
            explicit.append((key, key_node, value_node))
        written = {key for key, _, _ in explicit}
        return [item for item in merged if item[0] not in written] + explicit

    def mapping(self, node: Node, path: str, known: tuple[str, ...] | None, what: str,
                extensions: bool = False) -> dict[str, Node] | None:
        """The value nodes of a mapping by key; unknown keys reported with a suggestion.

        `known=None` accepts any key (isolation.peers). `extensions` lets `x-…` keys through
        unread: a place for YAML anchors (x-defaults: &defaults {…}), as in docker-compose.
        No value at all (`guards:` with every line commented out) means "all defaults".
        """
        if _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.report(node, path, f"expected {what}, found {_describe(node)}",
                        hint="write one 'key: value' per line, indented under this key")
            return None
        out: dict[str, Node] = {}
        for key, key_node, value_node in self._pairs(node, path, set()):
            dotted = f"{path}.{key}" if path else key
            if extensions and key.startswith("x-"):
                continue
            if known is not None and key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                if close:
                    hint = f"did you mean '{close[0]}'?"
                else:
                    hint = "known keys here: " + ", ".join(known)
                self.report(key_node, dotted, "unknown key", hint=hint)
                continue
            out[key] = value_node
        return out

    def sequence(self, node: Node, path: str, what: str) -> list[Node] | None:
        if _is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.report(node, path, f"expected a list of {what}, found {_describe(node)}",
                        hint="write [a, b] or one '- item' per line")
            return None
        return list(node.value)

    # -- scalars ----------------------------------------------------------------------------

    def text(self, node: Node, path: str, optional: bool = False) -> str | None:
        """Text as written (surrounding spaces removed); numbers and booleans are taken literally.

        `table: 2024` means the text "2024", not a number; `name: no` means "no", not false.
        Control characters and line breaks are refused everywhere: values end up in nft scripts,
        zone files and command lines.
        """
        if optional and _is_null(node):
            return None
        if not isinstance(node, ScalarNode) or node.tag not in _TEXTUAL:
            hint = "write a value, or remove the key to use the default" if _is_null(node) \
                else "write a single value"
            self.report(node, path, f"expected text, found {_describe(node)}", hint=hint)
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

    def integer(self, node: Node, path: str, low: int, high: int) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.report(node, path, f"expected a whole number, found {_describe(node)}",
                        hint=f"write a number from {low} to {high}")
            return None
        value = self._constructor.construct_yaml_int(node)
        if not low <= value <= high:
            self.report(node, path, f"must be from {low} to {high}", value)
            return None
        return value

    def ratio(self, node: Node, path: str, *, zero_ok: bool) -> float | None:
        """A fraction: 0.5 means 50 %. `zero_ok` decides whether 0 itself is allowed."""
        if not isinstance(node, ScalarNode) or node.tag not in (_INT, _FLOAT):
            self.report(node, path, f"expected a number, found {_describe(node)}",
                        hint="write a fraction such as 0.5 for 50 %")
            return None
        if node.tag == _INT:
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
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.report(node, path, f"expected true or false, found {_describe(node)}")
            return None
        return self._constructor.construct_yaml_bool(node)

    def _unit_text(self, node: Node, path: str, kind: str, hint: str) -> str | None:
        # The raw text, so that YAML 1.1's sexagesimal "1:30" (= 90) is not silently accepted.
        if not isinstance(node, ScalarNode) or node.tag not in (_STR, _INT):
            self.report(node, path, f"expected a {kind}, found {_describe(node)}", hint=hint)
            return None
        return str(node.value).strip()

    def duration(self, node: Node, path: str, minimum: int = 0,
                 maximum: int = MAX_DURATION) -> int | None:
        raw = self._unit_text(node, path, "duration", _DURATION_HINT)
        if raw is None:
            return None
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            self.report(node, path, str(exc))
            return None
        if seconds < minimum:
            self.report(node, path, f"too short, the minimum is {minimum}s", raw)
            return None
        if seconds > maximum:
            self.report(node, path, f"too long, the maximum is {maximum}s", raw)
            return None
        return seconds

    def size(self, node: Node, path: str) -> int | None:
        raw = self._unit_text(node, path, "size", _SIZE_HINT)
        if raw is None:
            return None
        try:
            value = parse_size(raw)
        except ValueError as exc:
            self.report(node, path, str(exc))
            return None
        if value <= 0:
            self.report(node, path, "must be more than 0 bytes", raw, hint=_SIZE_HINT)
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

    def resolve(self, value: str) -> str:
        return os.path.normpath(os.path.join(self.base_dir, value))

    def each(self, node: Node, path: str, what: str,
             convert: Callable[[Node, str], str | None]) -> tuple[str, ...] | None:
        """Convert every item of a list; None when any item (or the list itself) is wrong."""
        items = self.sequence(node, path, what)
        if items is None:
            return None
        out: list[str] = []
        ok = True
        for index, item in enumerate(items):
            value = convert(item, f"{path}[{index}]")
            if value is None:
                ok = False
            elif value not in out:
                out.append(value)
        return tuple(out) if ok else None

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
            return _address_or_name(value, wildcard=wildcard)
        except InvalidValue as exc:
            self.report(node, path, str(exc), hint=_NAME_OR_ADDRESS_HINT)
            return None

    def interface(self, node: Node, path: str) -> str | None:
        value = self.text(node, path)
        if value is None:
            return None
        if not _IFNAME_RE.fullmatch(value) or value in (".", ".."):
            self.report(node, path, "not a valid network interface name", value,
                        hint="at most 15 letters, digits or '_.+-', as shown by `ip link`")
            return None
        return value

    # -- sections -------------------------------------------------------------------------

    def config(self, root: Node | None) -> Config:
        if root is None:  # an empty file, or only comments
            return Config(path=self.file)
        top = self.mapping(root, "", _TOP_KEYS, "a mapping of settings", extensions=True)
        if top is None:
            return Config(path=self.file)
        kw: dict[str, Any] = {"path": self.file}
        for key in ("state_dir", "local_dir"):
            if key in top:
                kw[key] = self.file_path(top[key], key)
        if "metrics_file" in top:
            kw["metrics_file"] = self.file_path(top["metrics_file"], "metrics_file",
                                                optional=True)
        if "feeds" in top:
            kw["feeds"] = self.feeds(top["feeds"])
        sections: tuple[tuple[str, Callable[[Node], object]], ...] = (
            ("guards", self.guards), ("firewall", self.firewall), ("dns", self.dns),
            ("isolation", self.isolation),
        )
        for key, read in sections:
            if key in top:
                kw[key] = read(top[key])
        return Config(**{k: v for k, v in kw.items() if v is not None})

    def feeds(self, node: Node) -> tuple[FeedConfig, ...]:
        items = self.sequence(node, "feeds", "feeds (each starting with '- name:')")
        if items is None:
            return ()
        out: list[FeedConfig] = []
        first_line: dict[str, int] = {}
        for index, item in enumerate(items):
            feed = self.feed(item, f"feeds[{index}]")
            if feed is None:
                continue
            if not feed.name:
                continue  # missing or invalid, reported already
            if feed.name in first_line:
                self.report(item, f"feeds[{index}].name", "duplicate feed name", feed.name,
                            hint=f"also used by the feed on line {first_line[feed.name]}; "
                            "each feed needs its own name (state and status are kept by name)")
            else:
                first_line[feed.name] = feed.line
            out.append(feed)
        return tuple(out)

    def feed(self, node: Node, path: str) -> FeedConfig | None:
        m = self.mapping(node, path, _FEED_KEYS, "a feed (name:, url:, …)")
        if m is None:
            return None
        kw: dict[str, Any] = {"line": _line(node)}
        for key, what in (("name", "a name made of a-z, 0-9 and '-'"),
                          ("url", "the address of the feed's manifest.json or list")):
            if key not in m:
                self.report(node, f"{path}.{key}", "missing", hint=f"every feed needs {what}")
        if "name" in m:
            name = self.text(m["name"], f"{path}.name")
            if name is not None and not _FEED_NAME_RE.fullmatch(name):
                self.report(m["name"], f"{path}.name", "not a valid feed name", name,
                            hint="use 1 to 63 lowercase letters, digits and '-', not starting "
                            "with '-' (it is used in file names and on the command line)")
                name = None
            kw["name"] = name
        readers: dict[str, Callable[[Node, str], object]] = {
            "refresh": lambda n, p: self.duration(n, p, minimum=MIN_REFRESH),
            "max_size": self.size,
            "format": lambda n, p: self.choice(n, p, FEED_FORMATS),
            "signature": lambda n, p: self.choice(n, p, SIGNATURES),
            "subdomains": self.boolean,
            "max_reject_ratio": lambda n, p: self.ratio(n, p, zero_ok=True),
            "timeout": lambda n, p: self.duration(n, p, minimum=1, maximum=3600),
            "ca_file": lambda n, p: self.file_path(n, p, optional=True),
            "trusted_keys": lambda n, p: self.each(n, p, "minisign public keys",
                                                   self.trusted_key),
        }
        for key, read in readers.items():
            if key in m:
                kw[key] = read(m[key], f"{path}.{key}")
        # An invalid `signature:` was reported already: None skips the checks that depend on it.
        signature: str | None = kw["signature"] if "signature" in m else "minisign"
        if "url" in m:
            kw["url"] = self.feed_url(m["url"], f"{path}.url", signature)
        if "mirrors" in m:
            kw["mirrors"] = self.each(
                m["mirrors"], f"{path}.mirrors", "URLs",
                lambda n, p: self.feed_url(n, p, signature))
        # No `trusted_keys:` at all counts as none; an invalid list (None) was reported already.
        keys = kw["trusted_keys"] if "trusted_keys" in m else ()
        self.check_signature(node, m, path, signature, keys)
        kw = {k: v for k, v in kw.items() if v is not None}
        return FeedConfig(**{"name": "", "url": "", **kw})

    def check_signature(self, node: Node, m: dict[str, Node], path: str, signature: str | None,
                        keys: tuple[str, ...] | None) -> None:
        if signature == "minisign" and keys == ():
            where = m.get("trusted_keys", node)
            self.report(where, f"{path}.trusted_keys", "a signed feed needs at least one key",
                        hint="add the publisher's minisign public key (the RW… line, or the path "
                        "of its .pub file), or write 'signature: none' for an unsigned feed "
                        "over https")
        elif signature == "none" and keys:
            self.report(m["trusted_keys"], f"{path}.trusted_keys",
                        "keys are given but 'signature: none' turns verification off",
                        hint="remove 'signature: none' to verify this feed, or remove the keys")

    def feed_url(self, node: Node, path: str, signature: str | None) -> str | None:
        """https://, file:// (absolute path) or, for signed feeds only, http://.

        Nothing is fetched here: a feed server that is down must not stop the agent from
        starting with its last good copy.
        """
        url = self.text(node, path)
        if url is None:
            return None
        try:
            parts = urlsplit(url)
            port = parts.port  # raises ValueError on a bad port
        except ValueError as exc:
            self.report(node, path, f"not a valid URL: {exc}", url)
            return None
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            if not parts.hostname:
                self.report(node, path, "no host name in the URL", url,
                            hint="write https://host.example/path/manifest.json")
                return None
            if port == 0:
                self.report(node, path, "port 0 in the URL", url)
                return None
            if " " in url:
                self.report(node, path, "spaces in the URL", url, hint="write them as %20")
                return None
            if scheme == "http" and signature == "none":
                self.report(node, path, "unsigned feeds require https", url,
                            hint="over plain http anyone on the path can change the list; use "
                            "https://, or a signed feed (signature: minisign)")
                return None
            return url
        if scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                self.report(node, path, "a file:// URL needs an absolute path", url,
                            hint="write file:///srv/feeds/example/manifest.json (three slashes)")
                return None
            return url
        if not parts.scheme:
            hint = "start the URL with https:// (or file:/// for a local directory)"
        else:
            hint = "use https://, file:// or, for signed feeds only, http://"
        self.report(node, path, "unsupported URL scheme", url, hint=hint)
        return None

    def trusted_key(self, node: Node, path: str) -> str | None:
        """The base64 line of a minisign public key, given inline or read from a .pub file.

        Stored as the key line itself: the verifier then never touches the file system, and a
        key file that disappears later cannot silently drop a key.
        """
        value = self.text(node, path)
        if value is None:
            return None
        key_path = self.resolve(value)
        if _BASE64_RE.fullmatch(value) and not value.startswith("/"):
            problem = _key_line_problem(value)
            if not problem:
                return value
            if not os.path.exists(key_path):  # a file name that looks like base64 is still read
                self.report(node, path, f"not a minisign public key ({problem})", value,
                            hint=_KEY_HINT)
                return None
        try:
            with open(key_path, encoding="utf-8") as handle:
                content = handle.read(64 * 1024)
        except FileNotFoundError:
            self.report(node, path, "neither a minisign public key nor an existing key file",
                        key_path, hint=_KEY_HINT)
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            self.report(node, path, f"cannot read the key file: {reason}", key_path,
                        hint="check the path and that the file is readable by the agent")
            return None
        if "secret key" in content.split("\n", 1)[0]:
            self.report(node, path, "this is a minisign secret key", key_path,
                        hint="give the public key (the .pub file); the secret key belongs on "
                        "the publisher's signing machine only — treat it as leaked and rotate")
            return None
        lines = [line.strip() for line in content.splitlines()]
        lines = [line for line in lines if line and not line.startswith("untrusted comment:")]
        if not lines:
            self.report(node, path, "the key file holds no key", key_path, hint=_KEY_HINT)
            return None
        problem = _key_line_problem(lines[0])
        if problem:
            self.report(node, path, f"the key file does not hold a minisign public key "
                        f"({problem})", key_path, hint=_KEY_HINT)
            return None
        return lines[0]

    def guards(self, node: Node) -> GuardConfig | None:
        m = self.mapping(node, "guards", _GUARD_KEYS, "the guards settings")
        if m is None:
            return None
        kw: dict[str, Any] = {}
        if "min_prefix_v4" in m:
            kw["min_prefix_v4"] = self.integer(m["min_prefix_v4"], "guards.min_prefix_v4", 0, 32)
        if "min_prefix_v6" in m:
            kw["min_prefix_v6"] = self.integer(m["min_prefix_v6"], "guards.min_prefix_v6", 0, 128)
        if "max_change" in m:
            kw["max_change"] = self.ratio(m["max_change"], "guards.max_change", zero_ok=False)
        if "protected" in m:
            kw["protected"] = self.each(m["protected"], "guards.protected",
                                        "addresses, networks and names",
                                        lambda n, p: self.address_or_name(n, p, wildcard=True))
        if "allow_special" in m:
            kw["allow_special"] = self.each(m["allow_special"], "guards.allow_special",
                                            "networks", self.address)
        return GuardConfig(**{k: v for k, v in kw.items() if v is not None})

    def firewall(self, node: Node) -> FirewallConfig | None:
        m = self.mapping(node, "firewall", _FIREWALL_KEYS, "the firewall settings")
        if m is None:
            return None
        kw: dict[str, Any] = {}
        if "backend" in m:
            kw["backend"] = self.choice(m["backend"], "firewall.backend", FIREWALL_BACKENDS)
        if "table" in m:
            table = self.text(m["table"], "firewall.table")
            if table is not None and not _TABLE_RE.fullmatch(table):
                self.report(m["table"], "firewall.table", "not a valid nftables table name",
                            table, hint="use letters, digits and '_' only")
                table = None
            kw["table"] = table
        for key in ("lan_interfaces", "wan_interfaces"):
            if key in m:
                kw[key] = self.each(m[key], f"firewall.{key}", "interface names", self.interface)
        both = set(kw.get("lan_interfaces") or ()) & set(kw.get("wan_interfaces") or ())
        if both:
            self.report(m["wan_interfaces"], "firewall.wan_interfaces",
                        "interface listed as both LAN and WAN", ", ".join(sorted(both)),
                        hint="isolation cuts the WAN side only; list each interface once")
        if "management" in m:
            kw["management"] = self.each(m["management"], "firewall.management", "networks",
                                         self.address)
        if "offender_timeout" in m:
            kw["offender_timeout"] = self.duration(m["offender_timeout"],
                                                   "firewall.offender_timeout", minimum=1)
        if "log_prefix" in m:
            kw["log_prefix"] = self.log_prefix(m["log_prefix"])
        return FirewallConfig(**{k: v for k, v in kw.items() if v is not None})

    def log_prefix(self, node: Node) -> str | None:
        # Not text(): a trailing space is wanted here ("blocklist-agent: " reads well in logs).
        if not isinstance(node, ScalarNode) or node.tag not in _TEXTUAL:
            self.report(node, "firewall.log_prefix", f"expected text, found {_describe(node)}")
            return None
        value = str(node.value)
        if not _LOG_PREFIX_RE.fullmatch(value):
            self.report(node, "firewall.log_prefix", "not usable as an nftables log prefix",
                        value, hint="at most 50 letters, digits, spaces, '_', ':', '.' or '-'")
            return None
        return value

    def dns(self, node: Node) -> DnsConfig | None:
        m = self.mapping(node, "dns", _DNS_KEYS, "the dns settings")
        if m is None:
            return None
        kw: dict[str, Any] = {}
        if "backend" in m:
            kw["backend"] = self.choice(m["backend"], "dns.backend", DNS_BACKENDS)
        if "zone" in m:
            zone = self.text(m["zone"], "dns.zone")
            if zone is not None:
                try:
                    zone = normalize_domain(zone) + "."
                except InvalidValue as exc:
                    self.report(m["zone"], "dns.zone", str(exc),
                                hint="write a DNS name such as rpz.blocklist-agent.")
                    zone = None
            kw["zone"] = zone
        if "zonefile" in m:
            kw["zonefile"] = self.file_path(m["zonefile"], "dns.zonefile")
        if "action" in m:
            kw["action"] = self.dns_action(m["action"])
        if "control" in m:
            kw["control"] = self.command(m["control"], "dns.control")
        if "server" in m:
            kw["server"] = self.dns_server(m["server"])
        if "tsig_key_file" in m:
            kw["tsig_key_file"] = self.file_path(m["tsig_key_file"], "dns.tsig_key_file",
                                                 optional=True)
        if "ttl" in m:
            kw["ttl"] = self.duration(m["ttl"], "dns.ttl", maximum=_MAX_TTL)
        if "check" in m:
            kw["check"] = self.command(m["check"], "dns.check")
        if "resolver" in m:
            kw["resolver"] = self.dns_server(m["resolver"], "dns.resolver")
        if kw.get("backend") == "dnsupdate" and "server" not in m:
            self.report(node, "dns.server", "missing",
                        hint="the dnsupdate backend sends updates to a primary server: write "
                        "server: 192.0.2.53 (or host:port)")
        if kw.get("backend") == "dnsupdate" and "tsig_key_file" not in m:
            self.report(node, "dns.tsig_key_file", "missing",
                        hint="the dnsupdate backend signs its updates with TSIG: write the path "
                        "of the key file made by `tsig-keygen blocklist-agent`")
        return DnsConfig(**{k: v for k, v in kw.items() if v is not None})

    def command(self, node: Node, path: str) -> str | None:
        """A command prefix, split like a shell would (quotes allowed), but never run by one."""
        value = self.text(node, path, optional=True)
        if value is None:
            return None
        try:
            shlex.split(value)
        except ValueError as exc:
            self.report(node, path, f"cannot be split into words: {exc}", value,
                        hint="check the quotes")
            return None
        return value

    def dns_action(self, node: Node) -> str | None:
        value = self.text(node, "dns.action")
        if value is None:
            return None
        keyword, colon, target = value.partition(":")
        keyword = keyword.strip().lower()
        if keyword in ("nxdomain", "nodata", "drop") and not colon:
            return keyword
        if keyword == "redirect" and target.strip():
            try:
                where = _address_or_name(target.strip())
                if "/" in where:
                    raise InvalidValue(f"not a single address or name: {target.strip()}")
            except InvalidValue as exc:
                self.report(node, "dns.action", f"bad redirect target: {exc}",
                            hint="write redirect:192.0.2.80 or redirect:blocked.example.fr")
                return None
            return f"redirect:{where}"
        self.report(node, "dns.action", "not one of " + ", ".join(DNS_ACTIONS), value,
                    hint="nxdomain is the usual choice; redirect: sends users to a page that "
                    "explains the block")
        return None

    def dns_server(self, node: Node, path: str = "dns.server") -> str | None:
        """`host`, `host:port`, `[v6]:port` or a bare IPv6 address; kept as written."""
        value = self.text(node, path, optional=True)
        if value is None:
            return None
        host, port, problem = value, None, ""
        if value.startswith("["):
            host, bracket, rest = value[1:].partition("]")
            if not bracket or ":" not in host or (rest and not rest.startswith(":")):
                problem = "brackets are only for an IPv6 address, as in [2001:db8::53]:53"
            port = rest[1:] if rest else None
        elif value.count(":") == 1:
            host, _, port = value.partition(":")
        if not problem and port is not None and (
                not _DIGITS.fullmatch(port) or not 0 < int(port) < 65536):
            problem = f"bad port {port!r}"
        if not problem:
            try:
                if "/" in _address_or_name(host):
                    problem = "not a single host"
            except InvalidValue as exc:
                problem = str(exc)
        if problem:
            self.report(node, path, f"not a server address: {problem}", value,
                        hint="write 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53 or "
                        "ns1.example.fr")
            return None
        return value

    def isolation(self, node: Node) -> IsolationConfig | None:
        m = self.mapping(node, "isolation", _ISOLATION_KEYS, "the isolation settings")
        if m is None:
            return None
        kw: dict[str, Any] = {}
        if "allow" in m:
            kw["allow"] = self.each(m["allow"], "isolation.allow",
                                    "addresses, networks and names", self.address_or_name)
        if "allow_feeds" in m:
            kw["allow_feeds"] = self.boolean(m["allow_feeds"], "isolation.allow_feeds")
        if "peers" in m:
            kw["peers"] = self.peers(m["peers"])
        return IsolationConfig(**{k: v for k, v in kw.items() if v is not None})

    def peers(self, node: Node) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
        m = self.mapping(node, "isolation.peers", None,
                         "a mapping of peer names to networks (name: [192.0.2.0/24])")
        if m is None:
            return None
        out: list[tuple[str, tuple[str, ...]]] = []
        ok = True
        for name, value in m.items():
            path = f"isolation.peers.{name}"
            if not _FEED_NAME_RE.fullmatch(name):
                self.report(value, path, "not a valid peer name", name,
                            hint="use lowercase letters, digits and '-' (it is typed after "
                            "--peer on the command line)")
                ok = False
                continue
            cidrs = self.each(value, path, "networks", self.address)
            if cidrs is None:
                ok = False
            elif not cidrs:
                self.report(value, path, "no network given",
                            hint="list the partner's networks: [203.0.113.0/24]")
                ok = False
            else:
                out.append((name, cidrs))
        return tuple(out) if ok else None


_KEY_HINT = ("write the publisher's minisign public key (the line starting with RW, without the "
             "'untrusted comment' line) or the path of its .pub file")


def _key_line_problem(line: str) -> str:
    """Why `line` is not a minisign public key ('' if it is one)."""
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        return "not valid base64"
    if len(raw) != 42 or raw[:2] != b"Ed":
        return f"decodes to {len(raw)} bytes, expected 42 starting with 'Ed'"
    return ""
