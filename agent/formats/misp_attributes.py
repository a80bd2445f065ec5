"""MISP's own JSON as its API and feed directories serve it: an /attributes/restSearch result
(`{"response": {"Attribute": [...]}}`, each attribute with its `Event`) or a feed event
(`{"Event": {...}}` with attributes and objects), read with full provenance for `why`.

The mapping of attribute types is explicit: only types that name something a gateway can block
(`NETWORK_TYPES`) become indicators; every other type (link, hashes, email-*, text, ...) is
context, skipped without a reject. An attribute is skipped when its author marked it `to_ids:
false`, when it is `deleted`, or when MISP's decay models say it `decayed` (the decay score MISP
adds on request): blocking it would act on what the publisher or MISP itself said is no longer a
detection.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.errors import FormatError
from agent.formats._common import clip, finish, load_json, printable
from agent.formats.misp import add_attribute, is_true
from agent.indicators import Indicator, ParseResult, Reject

# The network indicators of MISP, and how the agent reads each: an address (ip-*), an address
# with a port (the port is dropped: the whole address is blocked), a name, a name with its
# address (both blocked), a URL (its host is blocked, as for every URL list).
NETWORK_TYPES = frozenset({
    "ip-dst", "ip-src", "ip-dst|port", "ip-src|port", "domain", "hostname", "domain|ip", "url",
})

Event = dict[str, object]


def parse_misp_attributes(text: str) -> ParseResult:
    """Indicators of every attribute that MISP says is a live network detection."""
    document = load_json(text, "MISP")
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    for event, position, attribute in _attributes(document, rejects):
        ref = origin(event, attribute, position)
        if not isinstance(attribute, dict):
            rejects.append(Reject(ref, "MISP attribute is not a JSON object"))
            continue
        kind = attribute.get("type")
        if not isinstance(kind, str) or kind.strip().lower() not in NETWORK_TYPES:
            continue
        if not live(attribute):
            continue
        add_attribute(kind, attribute.get("value"), ref, indicators, rejects)
    return finish(indicators, rejects)


def live(attribute: dict[str, object]) -> bool:
    """Flagged for detection, not deleted, not decayed by every decay model that scored it."""
    if not is_true(attribute.get("to_ids"), True) or is_true(attribute.get("deleted"), False):
        return False
    scores = attribute.get("decay_score")
    if isinstance(scores, list) and scores:
        return not all(isinstance(s, dict) and is_true(s.get("decayed"), False) for s in scores)
    return True


def origin(event: Event, attribute: object, position: str) -> str:
    """"MISP event 42 UUID, attribute UUID: INFO": what `why` shows of where a value came from."""
    def short(value: object, limit: int) -> str:
        return printable(clip(str(value), limit)) if isinstance(value, str | int) else ""

    attribute_uuid = short(attribute.get("uuid"), 40) if isinstance(attribute, dict) else ""
    head = "MISP event"
    for key in ("id", "uuid"):
        if short(event.get(key), 40):
            head += f" {short(event.get(key), 40)}"
    head += f", attribute {attribute_uuid or position}"
    info = short(event.get("info"), 60)
    return f"{head}: {info}" if info else head


def _attributes(document: object, rejects: list[Reject]
                ) -> Iterator[tuple[Event, str, object]]:
    """(event, position, attribute) for every attribute; deleted objects are skipped whole."""
    if isinstance(document, dict) and "response" in document:
        response = document["response"]
        if response == [] or response == {}:
            return  # MISP's answer when nothing matches
        listed = response.get("Attribute") if isinstance(response, dict) else None
        if not isinstance(listed, list):
            raise FormatError(
                "a MISP search response without an Attribute list", reason="format",
                hint="expected {\"response\": {\"Attribute\": [...]}} from /attributes/restSearch")
        for index, attribute in enumerate(listed):
            event = attribute.get("Event") if isinstance(attribute, dict) else None
            yield (event if isinstance(event, dict) else {}), f"Attribute[{index}]", attribute
        return
    events = document if isinstance(document, list) else [document]
    for number, item in enumerate(events, 1):
        event = item.get("Event") if isinstance(item, dict) else None
        if not isinstance(event, dict):
            raise FormatError(
                f"item {number} is not a MISP event", reason="format",
                hint='expected {"Event": {...}} as a MISP feed serves each event')
        groups: list[tuple[str, object]] = [("Attribute", event.get("Attribute"))]
        objects = event.get("Object")
        for index, obj in enumerate(objects if isinstance(objects, list) else []):
            if isinstance(obj, dict) and not is_true(obj.get("deleted"), False):
                groups.append((f"Object[{index}]", obj.get("Attribute")))
        for owner, attributes in groups:
            for index, attribute in enumerate(attributes if isinstance(attributes, list) else []):
                yield event, f"{owner}.Attribute[{index}]", attribute
