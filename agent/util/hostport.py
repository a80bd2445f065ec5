"""The one reader of `host`, `host:port`, `[v6]:port` and a bare IPv6 address."""

from __future__ import annotations


class HostPortError(ValueError):
    """The text is not host[:port]; the message says why."""


def split_host_port(text: str) -> tuple[str, str | None]:
    """("192.0.2.1", "53") from "192.0.2.1:53"; ("2001:db8::1", None) from "2001:db8::1".

    The port is returned as written (digits are checked by `port_number`), so callers that only
    strip a port and callers that need a number share the same reading of brackets and colons.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or ":" not in host or (rest and not rest.startswith(":")):
            raise HostPortError("brackets are only for an IPv6 address, as in [2001:db8::53]:53")
        return host, (rest[1:] if rest else None)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def port_number(port: str) -> int:
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise HostPortError(f"bad port {port!r}")
    return int(port)
