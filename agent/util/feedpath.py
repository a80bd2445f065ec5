"""The one rule for the path of a file inside a feed, shared by the manifest parser, the URL join
of the fetcher and the publisher, so that what a manifest may name is what can be fetched."""

from __future__ import annotations

MAX_COMPONENT = 200  # bytes of one path component


def payload_path_problem(path: object) -> str | None:
    """Why `path` cannot name a file of a feed, or None when it can.

    Payload paths come from a signed manifest, but a signature only says who wrote it: they are
    joined to the feed URL and to the cache directory, so anything that could climb out of either
    ("../x", "/etc/passwd", "http://other/x") is refused.
    """
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if len(path) > 1024:
        return "is longer than 1024 characters"
    if path.startswith("/"):
        return "must be relative, not absolute"
    if "\\" in path:
        return "must not contain a backslash"
    if ":" in path:
        return "must not contain ':' (no URLs or drive letters)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "must not contain control characters"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must not contain empty, '.' or '..' components"
    if any(len(part.encode("utf-8")) > MAX_COMPONENT for part in parts):
        # a file system takes 255 bytes a name; the cache adds a temp prefix and suffix
        return f"has a component longer than {MAX_COMPONENT} bytes"
    return None


def collision(paths: list[str]) -> str | None:
    """A path that is also the directory of another one (`a` and `a/b`): both cannot be
    files of one feed directory."""
    names = set(paths)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                return f"{'/'.join(parts[:i])!r} is both a file and the directory of {path!r}"
    return None
