"""The credential file of an API source (a MISP key, TAXII "user:password" or a token): one rule
for who may read it, applied when the configuration is loaded and again at every read.

The agent runs as root and the key opens the whole sharing platform to whoever holds it, so the
file must be root's alone: owned by uid 0, no group or other permission bits (0600 or 0400).
`check-config` refuses anything else with the command that fixes it. The secret read here is a
`Secret`, whose repr and str never show it, so a log line or a traceback that formats one shows
"***".
"""

from __future__ import annotations

import os
import stat

from agent.errors import FetchError


class Secret:
    """A credential that never prints itself; `reveal()` is called only to build a header."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def fix_hint(path: str) -> str:
    return (f"make it root's alone: chown root:root {path} && chmod 600 {path} "
            "(it must hold one line: the MISP API key, or the TAXII 'user:password' or token)")


def _problem(info: os.stat_result) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != 0:
        return f"is owned by uid {info.st_uid}, not by root"
    if info.st_mode & 0o077:
        return (f"has mode {stat.S_IMODE(info.st_mode):04o}: group or others may read it "
                "(it must be 0600)")
    return None


def credential_problem(path: str) -> str | None:
    """Why `path` may not hold a credential, or None when it may (nothing is read)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be examined: {exc.strerror or exc}"
    return _problem(info)


def read_credential(path: str, feed: str) -> Secret:
    """The credential in `path`, checked on the open file itself (no race with a chmod)."""
    def fail(problem: str) -> FetchError:
        return FetchError(f"the credential file {path} {problem}", where=f"feed {feed}",
                          reason="credential", hint=fix_hint(path))

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise fail("does not exist") from None
    except OSError as exc:
        raise fail(f"cannot be opened: {exc.strerror or exc}") from None
    with open(fd, "rb") as handle:
        problem = _problem(os.fstat(handle.fileno()))
        if problem:
            raise fail(problem)
        data = handle.read(64 * 1024 + 1)
    try:
        lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise fail("is not UTF-8 text") from None
    if len(data) > 64 * 1024 or len(lines) != 1 or not lines[0].isprintable():
        raise fail("must hold exactly one line of printable text")
    return Secret(lines[0])
