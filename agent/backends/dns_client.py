"""A small DNS client for the dnsupdate path: TSIG key files, SOA queries, AXFR and RFC 2136
UPDATE messages over one TCP connection to the primary (dnspython 2.3 message API).

Why its own framing instead of `dns.query.tcp`/`dns.query.xfr`: every exchange goes through a
socket from an injectable factory, so the tests and the benchmark drive the very same code
against a primary that lives inside a network namespace; and one connection carries all the
messages of a sync (hundreds for a first load) instead of one connection each.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update

from agent.errors import ApplyError, ConfigError
from agent.util.hostport import port_number, split_host_port

Connect = Callable[[int, int], socket.socket]
"""(family, kind) -> a new, unconnected socket; the default is socket.socket."""

_KEY_RE = re.compile(
    r'key\s+"?(?P<name>[A-Za-z0-9._-]+)"?\s*\{\s*'
    r'(?:algorithm\s+"?(?P<alg1>[a-z0-9-]+)"?\s*;\s*secret\s+"(?P<sec1>[A-Za-z0-9+/=]+)"\s*;'
    r'|secret\s+"(?P<sec2>[A-Za-z0-9+/=]+)"\s*;\s*algorithm\s+"?(?P<alg2>[a-z0-9-]+)"?\s*;)'
    r"\s*\}\s*;")


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        ring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
            {self.name: (self.algorithm, self.secret)})
        return ring


def load_tsig_key(path: str) -> TsigKey:
    """The first key of a BIND key file (`tsig-keygen NAME > FILE`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the TSIG key file: {exc.strerror}", where=path,
                          hint="create it with `tsig-keygen blocklist-agent > FILE` and give "
                          "the primary the same key (config/resolvers/bind-primary.conf)"
                          ) from None
    # whole-line comments only: a base64 secret may hold "//"
    match = _KEY_RE.search(re.sub(r"(?m)^\s*(#|//).*$", "", text))
    if match is None:
        raise ConfigError("no TSIG key found (expected: key \"NAME\" { algorithm hmac-sha256; "
                          "secret \"BASE64\"; };)", where=path,
                          hint="write the file with `tsig-keygen blocklist-agent`")
    key = TsigKey(match["name"], match["alg1"] or match["alg2"], match["sec1"] or match["sec2"])
    try:
        key.keyring()
    except (ValueError, dns.exception.DNSException) as exc:
        raise ConfigError(f"unusable TSIG key {key.name!r}: {exc}", where=path,
                          hint="write the file with `tsig-keygen blocklist-agent`") from None
    return key


def split_server(value: str, default_port: int = 53) -> tuple[str, int]:
    """"192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53", "2001:db8::53", "ns1.example"."""
    host, port = split_host_port(value)
    return host, default_port if port is None else port_number(port)


def _address(host: str, port: int) -> tuple[int, tuple[str, int]]:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except OSError as exc:
            raise ApplyError(f"cannot resolve DNS server name {host!r}: {exc}",
                             hint="write an address in dns.server / dns.resolver",
                             reason="dns-unreachable") from None
        return int(info[0]), (str(info[4][0]), port)
    return (socket.AF_INET6 if addr.version == 6 else socket.AF_INET), (str(addr), port)


class DnsClient:
    """One TCP connection to a DNS server (opened on first use, closed by `close`/`with`)."""

    def __init__(self, server: str, *, key: TsigKey | None = None, connect: Connect | None = None,
                 timeout: float = 30.0) -> None:
        self.server = server
        self.host, self.port = split_server(server)
        self.key = key
        self.connect = connect or (lambda family, kind: socket.socket(family, kind))
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def __enter__(self) -> DnsClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- transport -----------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> ApplyError:
        self.close()
        return ApplyError(
            f"cannot talk to the DNS server {self.server} over TCP: {exc}",
            hint="check dns.server and that the primary runs and accepts TCP from this host; "
            "the resolvers keep the zone they have", reason="dns-unreachable")

    def _socket(self) -> socket.socket:
        if self._sock is None:
            family, where = _address(self.host, self.port)
            sock = self.connect(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(where)
            except OSError as exc:
                sock.close()
                raise self._unreachable(exc) from None
            self._sock = sock
        return self._sock

    def _read(self, count: int) -> bytes:
        assert self._sock is not None
        data = b""
        while len(data) < count:
            chunk = self._sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def _send(self, msg: dns.message.Message) -> None:
        if self.key is not None:
            msg.use_tsig(self.key.keyring(), self.key.name, algorithm=self.key.algorithm)
        wire = msg.to_wire()
        try:
            self._socket().sendall(struct.pack("!H", len(wire)) + wire)
        except OSError as exc:
            raise self._unreachable(exc) from None

    def _receive(self, msg: dns.message.Message, **kwargs: object) -> dns.message.Message:
        try:
            (length,) = struct.unpack("!H", self._read(2))
            wire = self._read(length)
            return dns.message.from_wire(wire, keyring=msg.keyring, request_mac=msg.mac,
                                         **kwargs)  # type: ignore[arg-type]
        except OSError as exc:
            raise self._unreachable(exc) from None
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime,
                dns.message.UnknownTSIGKey) as exc:
            self.close()
            raise ApplyError(
                f"the DNS server {self.server} and the agent disagree on TSIG: "
                f"{type(exc).__name__}: {exc}",
                hint="the key in dns.tsig_key_file must be the one the primary's allow-update "
                "names (same name, algorithm and secret), and both clocks must be right",
                reason="dns-tsig") from None
        except dns.exception.DNSException as exc:
            self.close()
            raise ApplyError(f"unreadable answer from the DNS server {self.server}: {exc}",
                             hint="check that dns.server is the primary's DNS port",
                             reason="dns-protocol") from None

    def exchange(self, msg: dns.message.Message) -> dns.message.Message:
        self._send(msg)
        reply = self._receive(msg)
        if reply.id != msg.id:
            self.close()
            raise ApplyError(f"the DNS server {self.server} answered another query",
                             hint="retry; check for a proxy in between", reason="dns-protocol")
        return reply

    # -- queries -------------------------------------------------------------------------------

    def soa(self, zone: str) -> dns.rrset.RRset:
        """The zone's SOA as the server has it now; ApplyError if it does not serve the zone."""
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        query.flags = 0  # not recursive: we ask the zone's own server
        reply = self.exchange(query)
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name == dns.name.from_text(zone):
                return rrset
        raise ApplyError(
            f"the DNS server {self.server} does not serve the zone {zone} "
            f"(SOA query: {dns.rcode.to_text(reply.rcode())}, no SOA)",
            hint="declare the zone on the primary with allow-update for the agent's key "
            "(config/resolvers/bind-primary.conf)", reason="dns-zone-missing")

    def soa_serial(self, zone: str) -> int:
        return int(self.soa(zone)[0].serial)

    def axfr(self, zone: str) -> Iterator[dns.rrset.RRset]:
        """Every RRset of the zone (the SOA once), names relative to the zone."""
        origin = dns.name.from_text(zone)
        query = dns.message.make_query(origin, dns.rdatatype.AXFR)
        self._send(query)
        tsig_ctx = None
        soa_seen = False
        while True:
            reply = self._receive(query, xfr=True, origin=origin, tsig_ctx=tsig_ctx, multi=True)
            tsig_ctx = reply.tsig_ctx
            if reply.rcode() != dns.rcode.NOERROR:
                self.close()
                raise ApplyError(
                    f"the primary {self.server} refused the zone transfer of {zone}: "
                    f"{dns.rcode.to_text(reply.rcode())}",
                    hint="allow-transfer on the primary must include the agent's key "
                    "(config/resolvers/bind-primary.conf)", reason="dns-axfr")
            for rrset in reply.answer:
                if rrset.rdtype == dns.rdatatype.SOA and rrset.name.relativize(origin) == \
                        dns.name.empty:
                    if soa_seen:
                        return
                    soa_seen = True
                    continue
                yield rrset

    def update(self, msg: dns.update.UpdateMessage) -> None:
        reply = self.exchange(msg)
        rcode = reply.rcode()
        if rcode != dns.rcode.NOERROR:
            hints = {
                dns.rcode.REFUSED: "the primary's allow-update must name the agent's TSIG key",
                dns.rcode.NOTAUTH: "the primary is not authoritative for dns.zone, or refused "
                "the key",
                dns.rcode.NOTZONE: "dns.zone does not match the zone on the primary",
                dns.rcode.SERVFAIL: "see the primary's log (journal full? disk?)",
            }
            self.close()
            raise ApplyError(
                f"the primary {self.server} refused a dynamic update: "
                f"{dns.rcode.to_text(rcode)}",
                hint=hints.get(rcode, "see the primary's log") + "; the next sync compares "
                "the whole zone and repairs it", reason="dns-update")

