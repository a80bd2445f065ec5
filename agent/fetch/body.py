"""Reading a response body under the caps: bounded decoding, a raw byte cap, a length check.

urllib3 1.26 (Debian 12) decompresses a whole network read at once (a 64 KiB gzip read can become
64 MiB) and does not notice a body shorter than its Content-Length. The body is therefore read raw
and decoded here with bounded output, and its length is checked.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import requests
import urllib3

from agent.errors import FetchError
from agent.fetch.deadline import Deadline
from agent.fetch.failure import HopErrors

_CHUNK = 64 * 1024


def read_body(
    response: requests.Response, max_size: int, deadline: Deadline, failure: HopErrors
) -> bytes:
    """Read the raw body in bounded steps, decode it, and stop at max_size + 1 bytes."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    decoder = _Decoder.for_encoding(encoding)
    if decoder is None:
        raise failure.error(
            f"the server sent the feed with Content-Encoding {encoding!r}, which is not supported",
            "only gzip is requested; the server or a proxy ignores Accept-Encoding: tell the "
            "feed publisher",
            "encoding",
        )
    length = _content_length(response)
    # The wire bytes are capped too, so endless compressed data that decodes to nothing ends.
    # Compression can inflate incompressible data by a few bytes per 16 KiB: leave room for that.
    raw_cap = max_size if decoder.identity else max_size + max_size // 100 + _CHUNK
    if length is not None and length > raw_cap:
        raise failure.too_large(length, max_size)
    parts: list[bytes] = []
    size = 0
    raw = 0
    try:
        while True:
            block = response.raw.read(min(_CHUNK, raw_cap + 1 - raw), decode_content=False)
            if not block:
                break
            raw += len(block)
            if raw > raw_cap:
                raise failure.too_large(None, max_size)
            for piece in decoder.feed(block):
                size += len(piece)
                if size > max_size:
                    raise failure.too_large(None, max_size)
                parts.append(piece)
        complete = decoder.finished()
    except FetchError:
        raise
    except zlib.error as exc:
        raise failure.error(
            f"the gzip data sent by the server is corrupt: {exc}",
            "the server or a proxy damaged the data; it is retried automatically",
            "encoding",
        ) from exc
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError, ValueError) as exc:
        raise failure.from_exception(exc, body=True) from exc
    # A deadline shutdown can look like a normal end of data (body delimited by the connection
    # close): never return such a truncated body.
    if deadline.expired:
        raise failure.timed_out()
    if length is not None and raw < length:
        raise failure.incomplete(f"{raw} of the {length} bytes announced were received")
    if not complete:
        raise failure.incomplete("the gzip data ends before its end marker")
    return b"".join(parts)


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        # "10, 10" (a duplicated header) is tolerated as urllib3 does when all values agree.
        values = {int(v) for v in value.split(",")}
    except ValueError:
        return None
    return values.pop() if len(values) == 1 and min(values) >= 0 else None


class _Decoder:
    """Content-Encoding decoding with bounded output per step (at most _CHUNK bytes at a time).

    A gzip bomb (1 MiB of gzip is 1 GiB of zeros) therefore costs at most max_size + _CHUNK of
    memory before the cap stops it. Several gzip members in a row are decoded like gzip(1) does;
    trailing garbage after a complete member is ignored, as urllib3 and browsers do.
    """

    def __init__(self, wbits: int | None) -> None:
        self.identity = wbits is None
        self._wbits = wbits or 0
        self._obj = zlib.decompressobj(self._wbits) if wbits is not None else None
        self._members = 0  # completed members: after one, garbage is tolerated
        self._fallback = wbits == zlib.MAX_WBITS  # "deflate" may be raw deflate in practice
        self._output = False

    @classmethod
    def for_encoding(cls, encoding: str) -> _Decoder | None:
        if encoding in ("", "identity"):
            return cls(None)
        if encoding in ("gzip", "x-gzip"):
            return cls(16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return cls(zlib.MAX_WBITS)
        return None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._obj is None:
            yield data
            return
        while data:
            if self._obj.eof:
                self._members += 1
                self._obj = zlib.decompressobj(self._wbits)
            try:
                out = self._obj.decompress(data, _CHUNK)
            except zlib.error:
                if self._members:
                    return  # trailing garbage after a complete member
                if self._fallback and not self._output:
                    self._fallback = False
                    self._wbits = -zlib.MAX_WBITS
                    self._obj = zlib.decompressobj(self._wbits)
                    continue
                raise
            if out:
                self._output = True
                yield out
            if self._obj.eof:
                data = self._obj.unused_data
            elif self._obj.unconsumed_tail:
                data = self._obj.unconsumed_tail
            elif len(out) == _CHUNK:
                data = b""
                # Output was cut at _CHUNK with all input consumed: drain what zlib holds.
                while True:
                    out = self._obj.decompress(b"", _CHUNK)
                    if out:
                        yield out
                    if len(out) < _CHUNK:
                        break
            else:
                data = b""

    def finished(self) -> bool:
        """True when the encoded stream reached its end (always true for identity)."""
        return self._obj is None or self._obj.eof or self._members > 0
