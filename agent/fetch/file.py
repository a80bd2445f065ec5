"""file:// feeds: a local file read under the same size cap and reason codes as a download."""

from __future__ import annotations

import email.utils
import os
import stat
from urllib.parse import unquote, urlsplit

from agent.errors import FetchError
from agent.fetch.base import Response


def read_file(url: str, max_size: int) -> Response:
    """A local feed (a USB key, an NFS mount, a test fixture) under the same size cap.

    Last-Modified is derived from the file's mtime so that callers record validators the same way
    for every scheme; no request is conditional here (a rewrite within the same second would look
    unchanged).
    """
    path = _file_path(url)

    def fail(what: str, hint: str, reason: str) -> FetchError:
        return FetchError(what, hint=hint, where=url, reason=reason)

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise fail(
            "the feed file does not exist",
            "check the file:// URL of this feed and that the file was copied there",
            "not-found",
        ) from exc
    except OSError as exc:
        raise fail(
            f"the feed file cannot be opened: {exc.strerror or exc}",
            "check the file's permissions for the agent's user",
            "io",
        ) from exc
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise fail(
            "the feed path is not a regular file (a directory, device or pipe)",
            "point the file:// URL at the feed file itself",
            "io",
        )
    with open(fd, "rb") as handle:
        try:
            if info.st_size > max_size:
                raise fail(
                    f"the feed file is {info.st_size} bytes, more than this feed's max_size of "
                    f"{max_size} bytes",
                    "if the feed really grew, raise max_size for this feed",
                    "too-large",
                )
            data = handle.read(max_size + 1)  # the file may have grown since fstat
        except OSError as exc:
            raise fail(
                f"the feed file cannot be read: {exc.strerror or exc}",
                "check the disk or mount that holds it",
                "io",
            ) from exc
    if len(data) > max_size:
        raise fail(
            f"the feed file is larger than this feed's max_size of {max_size} bytes",
            "if the feed really grew, raise max_size for this feed",
            "too-large",
        )
    last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
    return Response(url=url, status=200, data=data, etag=None, last_modified=last_modified)


def _file_path(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path)
    problem = ""
    if parts.netloc not in ("", "localhost"):
        problem = f"names another host ({parts.netloc}); only local files can be read"
    elif parts.query:
        problem = "has a query string"
    elif not path.startswith("/"):
        problem = "is not an absolute path (write file:///absolute/path)"
    elif "\0" in path:
        problem = "contains a NUL character"
    if problem:
        raise FetchError(
            f"the file URL {problem}",
            hint="fix the feed URL in the configuration",
            where=url,
            reason="bad-url",
        )
    return path
