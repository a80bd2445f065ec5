"""A real TAXII 2.1 server for the tests: OASIS's medallion (memory backend, HTTP Basic) over
HTTPS with a certificate from the lab CA, on 127.0.0.1 and an ephemeral port.

medallion keeps its application in a module-level Flask object, so each server runs in its own
process (`python -m lab.taxii serve CONFIG CERT KEY`), which prints its port and serves until it
is stopped. medallion is a test tool (requirements-dev.txt), never a dependency of the agent.

    with TaxiiServer(tmp_path, ca, users={"agent": "secret"}, page_size=2) as taxii:
        taxii.add([indicator, ...])        # POST, as a producer would (date_added = now)
        taxii.collection_url               # https://127.0.0.1:PORT/api1/collections/ID/
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from lab.httpserver import CertificateAuthority

COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
MEDIA = "application/taxii+json;version=2.1"


def _data(objects: list[dict[str, Any]], added: str) -> dict[str, Any]:
    """medallion's memory-backend file: one API root with one readable collection."""
    manifest = [{"id": o["id"], "date_added": added, "media_type":
                 "application/stix+json;version=2.1",
                 "version": o.get("modified", o.get("created", added))} for o in objects]
    return {
        "/discovery": {"title": "lab TAXII", "default": "/api1/", "api_roots": ["/api1/"]},
        "api1": {
            "information": {"title": "lab", "versions": [MEDIA],
                            "max_content_length": 10 * 1024 * 1024},
            "status": [],
            "collections": [{
                "id": COLLECTION, "title": "indicators", "can_read": True, "can_write": True,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": objects, "manifest": manifest,
            }],
        },
    }


class TaxiiServer:
    def __init__(self, directory: Path, ca: CertificateAuthority, *, users: dict[str, str],
                 page_size: int = 2, objects: list[dict[str, Any]] | None = None,
                 added: str = "2024-05-01T00:00:00.000000Z") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.users = users
        data = self.directory / "taxii-data.json"
        data.write_text(json.dumps(_data(objects or [], added)))
        self.config = self.directory / "taxii-config.json"
        self.config.write_text(json.dumps({
            "backend": {"module": "medallion.backends.memory_backend",
                        "module_class": "MemoryBackend", "filename": str(data)},
            "users": users, "taxii": {"max_page_size": page_size},
        }))
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def collection_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api1/collections/{COLLECTION}/"

    def start(self) -> TaxiiServer:
        cert, key = self.ca.issue(("127.0.0.1",))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "lab.taxii", "serve", str(self.config), cert, key],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"medallion did not start: {line!r}")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> TaxiiServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def add(self, objects: list[dict[str, Any]]) -> None:
        """POST objects as a producer does; medallion dates them added now."""
        user, password = next(iter(self.users.items()))
        body = json.dumps({"objects": objects})
        reply = requests.post(
            self.collection_url + "objects/", data=body, auth=(user, password), timeout=10,
            verify=self.ca.cert_file,
            headers={"Accept": MEDIA, "Content-Type": MEDIA, "Content-Length": str(len(body))})
        reply.raise_for_status()


def serve(config: str, cert: str, key: str) -> None:
    """Child process: medallion's app over TLS; the first line of stdout is the port."""
    import ssl

    from medallion import (  # type: ignore[import-untyped]
        application_instance,
        register_blueprints,
        set_config,
    )
    from werkzeug.serving import make_server

    with open(config, encoding="utf-8") as handle:
        settings = json.load(handle)
    for part in ("users", "taxii", "backend"):
        set_config(application_instance, part, settings)
    register_blueprints(application_instance)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server("127.0.0.1", 0, application_instance, threaded=True,
                         ssl_context=context)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(*sys.argv[2:5])
