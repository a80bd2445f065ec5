"""The total deadline of one download, whatever the server does.

requests' timeouts bound each socket operation, not the download: a server trickling one byte per
second never trips them. A `Deadline` timer shuts the request's sockets down at the deadline,
wherever the request is (TLS handshake, headers, body). The connection classes below register
every socket they open, directly or through an HTTP proxy, with the deadline of their thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Deadline:
    """Ends a whole download at a wall-clock deadline, whatever the server does.

    Every socket opened by the calling thread while the deadline is active is registered (see
    `_WatchedHTTPConnection`) as a duplicate file descriptor. At the deadline a timer thread calls
    shutdown() on those duplicates: shutdown acts on the connection, not on one descriptor, so the
    blocked recv() in the calling thread returns at once (and urllib3's connection objects are
    never touched from another thread). The caller then sees an error or an early end of data and
    checks `expired`.
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    @classmethod
    def register(cls, sock: socket.socket) -> None:
        deadline: Deadline | None = getattr(cls._current, "deadline", None)
        if deadline is not None:
            deadline._watch(sock)

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def __enter__(self) -> Deadline:
        self._current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        self._current.deadline = None
        with self._lock:
            for dup in self._sockets:
                dup.close()
            self._sockets.clear()

    def _watch(self, sock: socket.socket) -> None:
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            if self.expired:
                _shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for dup in self._sockets:
                _shutdown(dup)


def _shutdown(sock: socket.socket) -> None:
    # OSError: already closed by the peer or by us, nothing left to interrupt.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, with its socket registered with the current `Deadline`."""

    def _new_conn(self) -> socket.socket:
        # urllib3 1.26's stubs omit the (stable, 1.x and 2.x) _new_conn hook.
        sock: socket.socket = super()._new_conn()  # type: ignore[misc, unused-ignore]
        Deadline.register(sock)
        return sock


class _WatchedHTTPSConnection(HTTPSConnection):
    """The TLS variant; the raw socket is registered before the handshake starts."""

    def _new_conn(self) -> socket.socket:
        # urllib3 1.26's stubs omit the (stable, 1.x and 2.x) _new_conn hook.
        sock: socket.socket = super()._new_conn()  # type: ignore[misc, unused-ignore]
        Deadline.register(sock)
        return sock


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """A requests adapter whose connections (direct or through an HTTP proxy) are watched.

    `max_retries=0`: retries, backoff and mirrors are the caller's business, with its own log.
    `pool_classes_by_scheme` is an instance attribute of urllib3's PoolManager in 1.26 and 2.x.
    """

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        _watch_pools(manager)
        return manager


def _watch_pools(manager: Any) -> None:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    # SOCKS proxy managers use their own pools: they keep only the per-operation timeouts.
    if classes == {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}:
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
