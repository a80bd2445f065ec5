"""MISP exports: CERT-FR's IOC CSV (and the stock MISP CSV), and MISP event JSON.

Both carry MISP attributes (a type, a value, `to_ids`), so both end in `add_attribute`, which alone
knows which MISP types are network indicators and how composite values (`domain|ip`,
`ip-dst|port`) split. An attribute its author marked `to_ids: false` (context, not for detection)
or `deleted` is skipped: enforcing it would block what the publisher said not to block.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.errors import FormatError
from agent.formats._common import (
    ANY,
    DOMAINS,
    IPS,
    Kinds,
    add,
    clip,
    describe,
    finish,
    load_json,
    ref_of,
    split_lines,
)
from agent.formats._csv import read_csv
from agent.indicators import Indicator, ParseResult, Reject

# Type -> one spec per "|"-separated part: (kinds, is a URL), or None for a part not used (port).
_Part = tuple[Kinds, bool] | None
_TYPES: dict[str, tuple[_Part, ...]] = {
    "ip-dst": ((IPS, False),),
    "ip-src": ((IPS, False),),
    "ip-dst|port": ((IPS, False), None),
    "ip-src|port": ((IPS, False), None),
    "domain": ((DOMAINS, False),),
    "hostname": ((DOMAINS, False),),
    "domain|ip": ((DOMAINS, False), (IPS, False)),
    "hostname|port": ((DOMAINS, False), None),
    "url": ((ANY, True),),
}
# Not "link": MISP's type for a reference (the article that describes the event, a sandbox
# report), never an indicator, whatever its to_ids says.

# CSV column names, most specific first: CERT-FR writes "signature_component.value" and
# "signature.type" (some exports "signature_component.type"); stock MISP writes "value", "type".
_VALUE_COLUMNS = ("signature_component.value", "signature.value", "value")
_TYPE_COLUMNS = ("signature_component.type", "signature.type", "type")
_TO_IDS_COLUMNS = ("signature_component.to_ids", "signature.to_ids", "to_ids")
_DELETED_COLUMNS = ("signature_component.deleted", "signature.deleted", "deleted")


def add_attribute(
    kind: object, value: object, ref: str, indicators: list[Indicator], rejects: list[Reject],
) -> None:
    """Append the indicators of one MISP attribute; types that are not network ones are skipped."""
    if not isinstance(kind, str):
        return
    kind = kind.strip().lower()
    parts = _TYPES.get(kind)
    if parts is None:
        return
    if len(parts) == 1:
        values: list[object] = [value]
    elif isinstance(value, str) and value.count("|") == len(parts) - 1:
        values = list(value.split("|"))
    else:
        reason = f"{kind} value needs {len(parts)} parts separated by '|'"
        rejects.append(Reject(ref, reason, clip(value) if isinstance(value, str)
                              else describe(value)))
        return
    for part, spec in zip(values, parts, strict=True):
        if spec is not None:
            add(part, ref, indicators, rejects, kinds=spec[0], url=spec[1], label=f"{kind} value")


def is_true(flag: object, default: bool) -> bool:
    """MISP booleans: JSON true/false, or "1"/"0"/"True"/"False" in CSV and older exports."""
    if flag is None or flag == "":
        return default
    if isinstance(flag, str):
        return flag.strip().lower() in ("1", "true", "yes")
    return bool(flag)


def csv_header(fields: set[str]) -> bool:
    return not fields.isdisjoint(_VALUE_COLUMNS) and not fields.isdisjoint(_TYPE_COLUMNS)


def parse_misp_csv(text: str) -> ParseResult:
    """CSV with a header line; value/type (and optional to_ids, deleted) columns found by name."""
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    table = read_csv(lines, csv_header, "MISP CSV", rejects)
    value_at = _column(table.columns, _VALUE_COLUMNS)
    type_at = _column(table.columns, _TYPE_COLUMNS)
    to_ids_at = _column(table.columns, _TO_IDS_COLUMNS)
    deleted_at = _column(table.columns, _DELETED_COLUMNS)
    assert value_at is not None and type_at is not None  # guaranteed by csv_header
    for ref, row in table.rows:
        if to_ids_at is not None and not is_true(row[to_ids_at], True):
            continue
        if deleted_at is not None and is_true(row[deleted_at], False):
            continue
        add_attribute(row[type_at], row[value_at], ref, indicators, rejects)
    return finish(indicators, rejects, early)


def _column(columns: dict[str, int], names: tuple[str, ...]) -> int | None:
    return next((columns[name] for name in names if name in columns), None)


def parse_misp_json(text: str) -> ParseResult:
    """`{"Event": {...}}`, a list of those, or `{"response": [...]}`; attributes of the event and
    of its objects. ref is the attribute uuid."""
    document = load_json(text, "MISP JSON")
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    for ref, attribute in _attributes(document, rejects):
        if not is_true(attribute.get("to_ids"), True) or is_true(attribute.get("deleted"), False):
            continue
        add_attribute(attribute.get("type"), attribute.get("value"), ref, indicators, rejects)
    return finish(indicators, rejects)


def _events(document: object) -> list[dict[str, object]]:
    """The event (or attribute-search) containers of a MISP JSON document."""
    items: object = document
    if isinstance(document, dict):
        items = document.get("response", document)
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        items = [items]
    events = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("Event"), dict):
            events.append(item["Event"])
        elif isinstance(item, dict) and "Attribute" in item:
            events.append(item)  # restSearch on attributes: {"response": {"Attribute": [...]}}
    if items and not events:
        raise FormatError(
            "no MISP Event found in the JSON", reason="format",
            hint='expected {"Event": {...}}, a list of them or {"response": [...]}; '
            "check the feed URL and format",
        )
    return events


def _attributes(document: object, rejects: list[Reject]) -> Iterator[tuple[str, dict[str, object]]]:
    """(ref, attribute) for every attribute of every event and object; objects marked deleted
    are skipped whole."""
    for number, event in enumerate(_events(document), 1):
        where = ref_of(event.get("uuid") or event.get("id"), f"event {number}")
        groups: list[tuple[str, object]] = [(where, event.get("Attribute"))]
        objects = event.get("Object")
        for index, obj in enumerate(objects if isinstance(objects, list) else []):
            if isinstance(obj, dict) and not is_true(obj.get("deleted"), False):
                groups.append((f"{where} Object[{index}]", obj.get("Attribute")))
        for owner, attributes in groups:
            for index, attribute in enumerate(attributes if isinstance(attributes, list) else []):
                ref = f"{owner} Attribute[{index}]"
                if not isinstance(attribute, dict):
                    rejects.append(Reject(ref, "MISP attribute is not a JSON object"))
                    continue
                yield ref_of(attribute.get("uuid"), ref), attribute
