"""Real HTTP and HTTPS servers on 127.0.0.1, and a throw-away CA: no mocks between agent and socket.

The fetch edge is where hostile or broken servers meet the agent (slow, endless, compressed,
redirecting, wrong certificate), so its tests, and the pipeline tests after them, talk to a real
server over a real socket. Everything here binds to 127.0.0.1 on an ephemeral port and lives in
the test process; nothing touches the host's network configuration. It lives in the lab, not in
tests/, because the demo needs the CA too and the lab never imports the tests.

Serve a directory (conditional GET with ETag / Last-Modified / 304 included)::

    with HttpServer(root=tmp_path) as server:
        url = server.url("/feed/manifest.json")        # http://127.0.0.1:PORT/feed/manifest.json

Over HTTPS, with a throw-away CA generated for the test::

    ca = CertificateAuthority(tmp_path / "pki")
    with HttpServer(root=tmp_path, ca=ca) as server:
        server.url("/x")      # https://127.0.0.1:PORT/x, certificate for 127.0.0.1 and localhost
        server.ca_file        # the CA's PEM file: what a feed's ca_file points to

Programmable routes (matched on the exact path, without the query string) take precedence over
the directory. A route is a `Reply`, a function `Request -> Reply`, or bytes served like a file::

    server.route("/gone", Reply(status=404))
    server.route("/old", Reply.redirect("/new"))
    server.route("/slow", Reply.trickle(interval=0.2, count=50))
    server.route("/big.gz", Reply.gzip(data))
    server.route("/list.txt", b"192.0.2.1\\n")
    server.route("/dyn", lambda request: Reply(body=request.query.encode()))

Every request received is recorded in `server.requests` (method, path, query, headers, and the
body of a POST) so tests can assert what the client sent, e.g. If-None-Match.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import gzip as gzip_module
import hashlib
import http
import ipaddress
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "HttpServer",
    "Pieces",
    "Reply",
    "Request",
    "conditional_reply",
    "unused_port",
]


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    method: str
    path: str  # percent-decoded, without the query string
    query: str
    headers: Mapping[str, str]  # names lowercased
    body: bytes = b""  # what a POST sent (Content-Length bytes)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Pieces:
    """A re-iterable body made of `count` copies of `piece` (`count=None`: endless).

    Re-iterable so that one `Reply` registered as a route serves every request the same way.
    """

    def __init__(self, piece: bytes, count: int | None = None) -> None:
        self.piece = piece
        self.count = count

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        while self.count is None or sent < self.count:
            sent += 1
            yield self.piece


@dataclass(frozen=True)
class Reply:
    """What the server sends back, down to its timing.

    body: bytes, or an iterable of byte pieces sent one by one (use `Pieces` or a list, not a
      generator, if the route is hit more than once).
    length: True sends Content-Length when the body is bytes; an int sends that value whatever
      the body (a lying server); False sends none. Without a length and without `chunked`, the
      body ends when the server closes the connection (HTTP/1.0 style). With an int the
      connection is closed after the body, so a short body looks cut off.
    chunked: Transfer-Encoding: chunked, one chunk per piece.
    delay: seconds to wait before sending anything (a server that accepts and then stalls).
    header_interval: seconds between single bytes of the status line and headers (a server
      trickling its headers, which no per-read timeout catches).
    interval: seconds to wait before each body piece (a trickling body).
    reason: the reason phrase of the status line, as a hostile server may write it.
    """

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    length: bool | int = True
    chunked: bool = False
    delay: float = 0.0
    header_interval: float = 0.0
    interval: float = 0.0
    reason: str | None = None  # the status line's phrase (None: the standard one)

    @staticmethod
    def redirect(location: str, status: int = 302) -> Reply:
        """A redirect; `location` may be relative ("/new", "b.txt") or absolute."""
        return Reply(status=status, headers={"Location": location})

    @staticmethod
    def trickle(
        interval: float = 0.2,
        count: int | None = 100,
        *,
        piece: bytes = b"x",
        chunked: bool = False,
    ) -> Reply:
        """One `piece` every `interval` seconds, `count` times (None: forever).

        With the default count the body ends after 20 s, so a client without a total deadline
        fails its test instead of hanging the suite. Content-Length announces the full size.
        """
        length: bool | int = False if chunked or count is None else len(piece) * count
        return Reply(body=Pieces(piece, count), length=length, chunked=chunked, interval=interval)

    @staticmethod
    def gzip(data: bytes, *, length: bool = True, chunked: bool = False) -> Reply:
        """`data` sent with Content-Encoding: gzip (a gzip bomb when `data` is big and uniform)."""
        body = gzip_module.compress(data, 6)
        if chunked:
            pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
            return Reply(body=pieces, headers={"Content-Encoding": "gzip"}, chunked=True)
        return Reply(body=body, headers={"Content-Encoding": "gzip"}, length=length)


Handler = Callable[[Request], Reply]
Route = Reply | Handler | bytes


def conditional_reply(
    request: Request,
    data: bytes,
    *,
    mtime: float,
    etag: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A file-like 200, or 304 when the request's validators match (RFC 9110 section 13).

    `etag` defaults to a strong tag derived from the content. If-None-Match wins over
    If-Modified-Since, as the RFC says; dates compare at one-second precision like HTTP dates.
    """
    tag = etag or '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    validators = {"ETag": tag, "Last-Modified": email.utils.formatdate(mtime, usegmt=True)}
    not_modified = False
    if_none_match = request.header("If-None-Match")
    if_modified_since = request.header("If-Modified-Since")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        not_modified = "*" in tags or tag.removeprefix("W/") in tags
    elif if_modified_since is not None:
        with contextlib.suppress(TypeError, ValueError):
            since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
            not_modified = int(mtime) <= since
    if not_modified:
        return Reply(status=304, headers=validators, length=False)
    return Reply(body=data, headers={**validators, **(headers or {})})


class CertificateAuthority:
    """A throw-away CA (ECDSA P-256) that issues server certificates, all written as PEM files.

    `cert_file` is what a feed's `ca_file` points to. The system trust store knows nothing of this
    CA, so a client without `ca_file` fails verification exactly as it would against a private
    PKI or an intercepting proxy.
    """

    def __init__(self, directory: str | os.PathLike[str], name: str = "blocklist-agent test CA"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        slug = "".join(c if c.isalnum() else "-" for c in name.lower())
        self.cert_file = str(self.directory / f"{slug}.pem")
        Path(self.cert_file).write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self._issued = 0

    def issue(self, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> tuple[str, str]:
        """A server certificate for `hosts` (names or IP addresses): (cert_file, key_file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        self._issued += 1
        cert_file = self.directory / f"server-{self._issued}.pem"
        key_file = self.directory / f"server-{self._issued}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(cert_file), str(key_file)

    def server_context(self, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> ssl.SSLContext:
        """A TLS server context presenting a fresh certificate for `hosts`."""
        cert_file, key_file = self.issue(hosts)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


class HttpServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 and an ephemeral port; HTTPS when `ca` is given.

    root: directory served for paths without a route (None: 404 for those).
    ca: serve HTTPS with a certificate from this CA naming `hosts` (names or IP addresses).
    host: the address to listen on; keep the loopback default.

    Use it as a context manager (or `start()` / `stop()`). `stop()` aborts slow and endless
    replies and closes open connections, so a test never waits for a trickling handler.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        ca: CertificateAuthority | None = None,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
        host: str = "127.0.0.1",
    ) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.ca = ca
        self.hosts = tuple(hosts)
        self.host = host
        self.scheme = "https" if ca is not None else "http"
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []  # server-side failures, e.g. refused handshakes
        self._routes: dict[str, Route] = {}
        self._route_mtime: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle

    def start(self) -> HttpServer:
        context = self.ca.server_context(self.hosts) if self.ca is not None else None
        self._server = _Server((self.host, 0), _Handler, owner=self, context=context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one interval
            name=f"HttpServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """ "http://127.0.0.1:PORT" (or https), without a trailing slash."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def ca_file(self) -> str | None:
        """The PEM file of the CA that signed this server's certificate (None for plain http)."""
        return self.ca.cert_file if self.ca is not None else None

    # --- behaviour

    def route(self, path: str, reply: Route) -> None:
        """Serve `reply` at `path` (exact match, query ignored); replaces an earlier route."""
        with self._lock:
            self._routes[path] = reply
            self._route_mtime[path] = time.time()

    def requests_for(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _reply(self, request: Request) -> Reply:
        with self._lock:
            route = self._routes.get(request.path)
            mtime = self._route_mtime.get(request.path, 0.0)
        if isinstance(route, Reply):
            return route
        if isinstance(route, bytes):
            return conditional_reply(request, route, mtime=mtime)
        if route is not None:
            return route(request)
        return self._file_reply(request)

    def _file_reply(self, request: Request) -> Reply:
        if self.root is None:
            return Reply(status=404, body=b"not found\n")
        target = (self.root / request.path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return Reply(status=404, body=b"not found\n")
        data = target.read_bytes()
        return conditional_reply(request, data, mtime=target.stat().st_mtime)


def unused_port(host: str = "127.0.0.1") -> int:
    """A port on which nothing listens right now: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- internals ------------------------------------------------------------------------------------


class _Stopped(Exception):
    """The server is stopping: abandon the reply in progress."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler stuck on a slow client

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        owner: HttpServer,
        context: ssl.SSLContext | None,
    ) -> None:
        self.owner = owner
        self.context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's own thread: the TLS handshake happens here, not in accept()."""
        connection: socket.socket = request
        connection.settimeout(30)  # a client that never speaks must not pin a thread forever
        if self.context is not None:
            connection = self.context.wrap_socket(connection, server_side=True)
        with self._connections_lock:
            self._connections.add(connection)
        try:
            super().finish_request(connection, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            if connection is not request:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_WR)
                connection.close()

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Record instead of printing: clients that hang up or refuse our certificate are the
        point of many tests."""
        error = sys.exc_info()[1]
        if error is not None:
            self.owner.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_POST(self) -> None:
        self._serve(head=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is `HttpServer.requests`

    def _serve(self, *, head: bool) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=unquote(split.path),
            query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length > 0 else b"",
        )
        owner = self.server.owner
        owner._record(request)
        reply = owner._reply(request)
        try:
            self._send(reply, head=head)
        except (_Stopped, BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True  # the client hung up (often on purpose) or we stop

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self.server.owner._stopping.wait(seconds):
            raise _Stopped

    def _send(self, reply: Reply, *, head: bool) -> None:
        self._wait(reply.delay)
        body = reply.body
        no_body = head or reply.status in (204, 304) or 100 <= reply.status < 200
        names = {name.lower() for name in reply.headers}
        phrase = _phrase(reply.status) if reply.reason is None else reply.reason
        lines = [f"HTTP/1.1 {reply.status} {phrase}"]
        lines += [f"{name}: {value}" for name, value in reply.headers.items()]
        if "date" not in names:
            lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if reply.chunked and not no_body:
            lines.append("Transfer-Encoding: chunked")
        elif reply.length is True and isinstance(body, bytes):
            if reply.status != 304:
                lines.append(f"Content-Length: {len(body)}")
        elif not isinstance(reply.length, bool):
            lines.append(f"Content-Length: {reply.length}")
            # A length that may not match the body: close afterwards so that a short body shows
            # as a cut connection instead of leaving the client waiting for the rest.
            self.close_connection = True
        elif not no_body:
            lines.append("Connection: close")  # the body ends when the connection closes
            self.close_connection = True
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if reply.header_interval > 0:
            for i in range(len(head_bytes)):
                self.wfile.write(head_bytes[i : i + 1])
                self._wait(reply.header_interval)
        else:
            self.wfile.write(head_bytes)
        if no_body:
            return
        pieces: Iterable[bytes] = [body] if isinstance(body, bytes) else body
        for piece in pieces:
            self._wait(reply.interval)
            if reply.chunked:
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if reply.chunked:
            self.wfile.write(b"0\r\n\r\n")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
