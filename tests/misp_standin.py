"""A loopback stand-in for MISP's `POST /attributes/restSearch`, since MISP itself (PHP, MySQL,
Redis) cannot run here. It follows MISP's documented request and response shapes (the OpenAPI
description shipped with MISP, app/webroot/doc/openapi.yaml) and filters honestly:

- the key in the `Authorization` header, else 403 and MISP's "Authentication failed" document;
- a JSON body; `returnFormat` json; `limit`/`page` (pages from 1);
- `to_ids`, `published`, `tags` (any of them; "!tag" excludes), `last` (events published within
  "30d"/"12h"/...), `timestamp` (attributes changed at or after), `deleted` (0: live only, the
  default; 1: deleted only; [0, 1]: both), `enforceWarninglist` (values of its warninglist
  dropped), `includeDecayScore` (adds `decay_score`) and `excludeDecayed`;
- the answer `{"response": {"Attribute": [...]}}`, each attribute with its `Event` (id, uuid,
  info, org_id, orgc_id, distribution), and the X-Result-Count header.

Attributes are given as MISP stores them, each with an `_event` dict (id, uuid, info,
published, publish_timestamp, tags) and, for the decay tests, `_decayed`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lab.httpserver import Reply, Request

AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled "
               "user along in the Authorization header.")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def event(number: int, info: str, *, published: bool = True, tags: tuple[str, ...] = (),
          published_at: int | None = None) -> dict[str, Any]:
    return {"id": str(number), "uuid": f"5e0c{number:04d}-0000-4000-8000-000000000000",
            "info": info, "published": published, "tags": list(tags),
            "publish_timestamp": str(published_at or int(time.time()) - 3600)}


def attribute(number: int, value: str, kind: str, ev: dict[str, Any], *, to_ids: bool = True,
              deleted: bool = False, timestamp: int = 1714550400) -> dict[str, Any]:
    return {"id": str(number), "uuid": f"a77r{number:04d}-0000-4000-8000-000000000000",
            "event_id": ev["id"], "object_id": "0", "object_relation": None,
            "category": "Network activity", "type": kind, "value": value, "to_ids": to_ids,
            "timestamp": str(timestamp), "distribution": "5", "sharing_group_id": "0",
            "comment": "", "deleted": deleted, "disable_correlation": False,
            "first_seen": None, "last_seen": None, "_event": ev}


class MispStandIn:
    """The route handler; `bodies` keeps every accepted request body, in order."""

    def __init__(self, key: str, attributes: list[dict[str, Any]],
                 warninglist: tuple[str, ...] = ()) -> None:
        self.key = key
        self.attributes = attributes
        self.warninglist = set(warninglist)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST":
            return _json({"name": "Method not allowed", "message": "Use POST",
                          "url": request.path}, 405)
        if request.header("Authorization") != self.key:
            return _json({"name": AUTH_FAILED, "message": AUTH_FAILED, "url": request.path}, 403)
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _json({"name": "Invalid JSON", "message": "Invalid JSON", "url": request.path},
                         400)
        self.bodies.append(body)
        if body.get("returnFormat", "json") != "json":
            return _json({"name": "Unsupported here", "message": "json only", "url": "x"}, 400)
        found = [a for a in self.attributes if self._matches(a, body)]
        total = len(found)
        limit = body.get("limit")
        if limit:
            page = int(body.get("page", 1))
            found = found[(page - 1) * int(limit): page * int(limit)]
        listed = [self._shown(a, body) for a in found]
        return _json({"response": {"Attribute": listed}}, 200, {"X-Result-Count": str(total)})

    def _matches(self, a: dict[str, Any], body: dict[str, Any]) -> bool:
        ev = a["_event"]
        deleted = body.get("deleted", 0)
        wanted = {int(d) for d in deleted} if isinstance(deleted, list) else {int(deleted)}
        checks = [
            int(a["deleted"]) in wanted,
            "to_ids" not in body or int(body["to_ids"]) == int(a["to_ids"]),
            "published" not in body or int(body["published"]) == int(ev["published"]),
            "timestamp" not in body or int(a["timestamp"]) >= int(body["timestamp"]),
            not body.get("enforceWarninglist") or a["value"] not in self.warninglist,
            not body.get("excludeDecayed") or not a.get("_decayed"),
        ]
        if body.get("last"):
            text = str(body["last"])
            window = int(text[:-1]) * _UNITS[text[-1]] if text[-1] in _UNITS else int(text)
            checks.append(int(ev["publish_timestamp"]) >= time.time() - window)
        tags = body.get("tags") or []
        wanted_tags = [t for t in tags if not t.startswith("!")]
        if wanted_tags:
            checks.append(any(t in ev["tags"] for t in wanted_tags))
        checks.append(not any(t[1:] in ev["tags"] for t in tags if t.startswith("!")))
        return all(checks)

    @staticmethod
    def _shown(a: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        ev = a["_event"]
        shown = {k: v for k, v in a.items() if not k.startswith("_")}
        shown["Event"] = {"org_id": "1", "distribution": "1", "id": ev["id"],
                          "info": ev["info"], "orgc_id": "2", "uuid": ev["uuid"]}
        if body.get("includeDecayScore"):
            shown["decay_score"] = [{"score": 3.2 if a.get("_decayed") else 71.5,
                                     "base_score": 80, "decayed": bool(a.get("_decayed")),
                                     "DecayingModel": {"id": "1", "name": "NIDS Simple"}}]
        return shown


def _json(document: object, status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body=json.dumps(document).encode(),
                 headers={"Content-Type": "application/json", **(headers or {})})
