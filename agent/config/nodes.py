"""The YAML node walker under every section: it finds the keys of a mapping and the items of a
list, and collects every problem as `FILE:LINE: KEY.PATH: problem (value) — hint` instead of
stopping at the first.

It works on `yaml.compose()` nodes rather than on loaded Python values because only nodes
remember their line, and because PyYAML's loader silently keeps the last of two duplicate keys:
a second `signature:` in a feed must be an error, not a coin toss.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE = TAG + "merge"
_NO_VALUE = object()

Convert = Callable[[Node, str], str | None]
# How each key of a mapping is read: (value node, key path) -> value, or None once reported.
Readers = Mapping[str, Callable[[Node, str], object]]
T = TypeVar("T")


def given(cls: type[T], values: dict[str, Any], **fallback: Any) -> T:
    """The settings dataclass of what was read: a key not written, or wrong, keeps its default.

    `fallback` fills the fields without a default (a feed's name and url) so that reading can go
    on after they were found missing or wrong; the problem was reported already.
    """
    return cls(**{**fallback, **{k: v for k, v in values.items() if v is not None}})


def describe(node: Node) -> str:
    """What the operator wrote, in words, for "expected X, found Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping (key: value lines)"
    if isinstance(node, SequenceNode):
        return "a list"
    kinds = {STR: "text", INT: "a whole number", FLOAT: "a number", BOOL: "true/false",
             NULL: "no value"}
    kind = kinds.get(node.tag, f"a value tagged {node.tag}")
    if node.tag == NULL:
        return kind
    return f"{kind} ({_show(node.value)})"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def node_line(node: Node | None) -> int:
    if node is None or node.start_mark is None:
        return 1
    return int(node.start_mark.line) + 1


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL


class NodeReader:
    """Walks mappings and lists of the node tree, collecting every problem instead of stopping."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[tuple[int, str]] = []

    # -- reporting ------------------------------------------------------------------------

    def report(self, node: Node | None, path: str, problem: str, value: object = _NO_VALUE,
               hint: str = "") -> None:
        line = node_line(node)
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
            if not isinstance(key_node, ScalarNode) or key_node.tag == NULL:
                self.report(key_node, path, "a key must be a plain word", hint="write key: value")
                continue
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            if key in first_line:
                self.report(key_node, dotted, f"duplicate key (also on line {first_line[key]})",
                            hint="YAML silently keeps only the last one; remove one of the two")
            first_line[key] = node_line(key_node)
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
        if is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.report(node, path, f"expected {what}, found {describe(node)}",
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

    def section(self, node: Node, name: str, cls: type) -> dict[str, Node] | None:
        """The keys of a settings section: those of its dataclass, the others reported."""
        return self.mapping(node, name, tuple(f.name for f in fields(cls)), f"the {name} settings")

    def sequence(self, node: Node, path: str, what: str) -> list[Node] | None:
        if is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.report(node, path, f"expected a list of {what}, found {describe(node)}",
                        hint="write [a, b] or one '- item' per line")
            return None
        return list(node.value)

    def each(self, node: Node, path: str, what: str, convert: Convert) -> tuple[str, ...] | None:
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

    def settings(self, m: dict[str, Node], path: str, readers: Readers) -> dict[str, Any]:
        """The value of each key written in `m`, read by its reader: None where it was wrong.

        Keys are read in the order of `readers`, which is the order their problems are listed in
        when two share a line.
        """
        return {key: read(m[key], f"{path}.{key}" if path else key)
                for key, read in readers.items() if key in m}
