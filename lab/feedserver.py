"""A static HTTPS server for the lab's feed publisher: `python -m lab.feedserver DIR CERT KEY
ADDRESS PORT`. Runs inside a lab namespace (Lab.spawn), so the agent fetches its feed over real
TLS from "the internet" side, as it would from a CERT's web server or CDN."""

from __future__ import annotations

import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet: the demo narrates
        pass


def main(argv: list[str]) -> None:
    directory, cert, key, address, port = argv
    handler = functools.partial(Handler, directory=directory)
    server = http.server.ThreadingHTTPServer((address, int(port)), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
