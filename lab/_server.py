"""Tiny TCP servers run inside a lab namespace: HTTP "ok" and a byte echo.

Why not `python3 -m http.server`: it cannot bind v4 and v6 at once, serves files from its working
directory, logs every request to stderr, and has no echo mode for `HeldConnection`. This file is
run *as a script* (`python -I -S lab/_server.py ...`) by `Lab`, never imported by the agent, so it
uses the standard library only and imports nothing from the `lab` package: that keeps its start
fast (about 30 ms) and independent of `sys.path` inside the namespace.

Usage: `_server.py --name ROLE --listen KIND,ADDR,PORT [--listen ...]` where KIND is `http` or
`echo` and ADDR is an address or `*` (every v4 and v6 address of the namespace, including the
AnyIP prefixes of ns wan). It prints one line `ready` on stdout once every socket listens, so the
caller knows probes will find something to connect to, then serves until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import sys
from collections.abc import Awaitable, Callable

HTTP_BODY = b"ok\n"


async def _serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str
) -> None:
    """Answer any request with 200 "ok", naming the namespace and the address that answered.

    The headers let a test tell *which* host answered (a redirect or a wrong route would show).
    """
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        local = writer.get_extra_info("sockname")
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain\r\n"
            f"Content-Length: {len(HTTP_BODY)}\r\n"
            f"X-Lab-Ns: {name}\r\n"
            f"X-Lab-Addr: {local[0] if local else '?'}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("ascii") + HTTP_BODY)
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


async def _serve_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send every byte back, for as long as the peer keeps the connection open."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _main(name: str, listens: list[tuple[str, str, int]]) -> None:
    servers = []
    for kind, addr, port in listens:
        host = None if addr == "*" else addr
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
        handler = functools.partial(_serve_http, name=name) if kind == "http" else _serve_echo
        server = await asyncio.start_server(handler, host=host, port=port, reuse_address=True)
        servers.append(server)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(server.serve_forever() for server in servers))


def _parse_listen(text: str) -> tuple[str, str, int]:
    kind, addr, port = text.split(",")
    if kind not in ("http", "echo"):
        raise argparse.ArgumentTypeError(f"unknown server kind {kind!r} (http or echo)")
    if addr != "*":
        ipaddress.ip_address(addr)  # a literal address only: never a name to resolve
    return kind, addr, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="lab")
    parser.add_argument("--listen", action="append", type=_parse_listen, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.name, args.listen))


if __name__ == "__main__":
    main()
