"""Trusted keys: the one reading of a minisign public key as operators give it, inline (the RW…
line) or as the path of a .pub file.

A key is stored as its base64 line: the verifier then never touches the file system, and a key
file that disappears later cannot silently drop a key. Both ways of giving a key end in the same
check of that line (`key_line_problem`), so an inline key and a key file can never disagree.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from yaml.nodes import Node

from agent.config.perms import STRICT_HINT, strict_problem
from agent.config.values import ValueReader

KEY_HINT = ("write the publisher's minisign public key (the line starting with RW, without the "
            "'untrusted comment' line) or the path of its .pub file")
# A minisign public key line: base64 of "Ed" + 8-byte key id + 32-byte key (56 characters).
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
_MAX_KEY_FILE = 64 * 1024


class KeyProblem(ValueError):
    """Why a trusted key cannot be used, with the value to show and what to do."""

    def __init__(self, problem: str, shown: str, hint: str = KEY_HINT) -> None:
        super().__init__(problem)
        self.problem = problem
        self.shown = shown
        self.hint = hint


def key_line_problem(line: str) -> str:
    """Why `line` is not a minisign public key ('' if it is one)."""
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        return "not valid base64"
    if len(raw) != 42 or raw[:2] != b"Ed":
        return f"decodes to {len(raw)} bytes, expected 42 starting with 'Ed'"
    return ""


def trusted_key_line(value: str, key_path: str) -> str:
    """The key line of `value`: the value itself if it is a key, else read from `key_path`.

    `key_path` is `value` resolved against the configuration's directory. A value that looks like
    base64 but is no key is still tried as a file name (keys/PublisherKeyRotated2026 is one).
    Raises KeyProblem.
    """
    if _BASE64_RE.fullmatch(value) and not value.startswith("/"):
        problem = key_line_problem(value)
        if not problem:
            return value
        if not os.path.exists(key_path):
            raise KeyProblem(f"not a minisign public key ({problem})", value)
    return _key_file_line(key_path)


def _key_file_line(key_path: str) -> str:
    problem = strict_problem(key_path)
    if problem is not None:
        raise KeyProblem(f"refused: {problem}", key_path, hint=STRICT_HINT)
    try:
        with open(key_path, encoding="utf-8") as handle:
            content = handle.read(_MAX_KEY_FILE)
    except FileNotFoundError:
        raise KeyProblem("neither a minisign public key nor an existing key file",
                         key_path) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise KeyProblem(f"cannot read the key file: {reason}", key_path,
                         hint="check the path and that the file is readable by the agent") \
            from None
    if "secret key" in content.split("\n", 1)[0]:
        raise KeyProblem("this is a minisign secret key", key_path,
                         hint="give the public key (the .pub file); the secret key belongs on "
                         "the publisher's signing machine only — treat it as leaked and rotate")
    lines = [line.strip() for line in content.splitlines()]
    lines = [line for line in lines if line and not line.startswith("untrusted comment:")]
    if not lines:
        raise KeyProblem("the key file holds no key", key_path)
    problem = key_line_problem(lines[0])
    if problem:
        raise KeyProblem(f"the key file does not hold a minisign public key ({problem})",
                         key_path)
    return lines[0]


def read_trusted_key(r: ValueReader, node: Node, path: str) -> str | None:
    """One item of `feeds[N].trusted_keys`, reported at its line when it is not usable."""
    value = r.text(node, path)
    if value is None:
        return None
    try:
        return trusted_key_line(value, r.resolve(value))
    except KeyProblem as exc:
        r.report(node, path, exc.problem, exc.shown, hint=exc.hint)
        return None
