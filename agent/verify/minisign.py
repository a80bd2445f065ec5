"""In-process minisign, the verifying half: public keys, signatures, and their check
(docs/design.md §2). The signing half (secret keys, key generation, signing) is
`agent.publish.minisign`: a gateway only ever verifies.

The agent verifies feeds with `cryptography` (Ed25519) and `hashlib` (BLAKE2b) instead of running
the `minisign` binary, so that verification is a pure function of bytes that tests can drive and
that never depends on a tool's exit codes or output wording. The formats are exactly minisign's,
and the test suite checks interop with Debian's `minisign` in both directions.

Formats (all binary blobs are standard base64 on one line):
- public key:  "Ed" | key id (8) | Ed25519 public key (32)
- signature:   "ED" | key id (8) | Ed25519 signature over BLAKE2b-512(data) (64), then a trusted
  comment and a global signature over (signature || trusted comment bytes)
The key id is shown as minisign 0.11 shows it: the 8 bytes read as a little-endian integer, in
upper-case hex without zero padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import AgentError, VerifyError

SIGALG = b"Ed"  # public/secret keys, and legacy (non-prehashed) signatures
SIGALG_HASHED = b"ED"

UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "
DEFAULT_UNTRUSTED_COMMENT = "signature from blocklist-agent secret key"
SIGNATURE_TEXT_MAX = 16384

_TIMESTAMP = re.compile(r"[0-9]{1,19}")


class MinisignKeyError(AgentError):
    """A key file or key string cannot be used. reason: bad-key, password-required,
    wrong-password, unsupported-key."""

    default_reason = "bad-key"


def format_key_id(key_id: bytes) -> str:
    """As minisign 0.11 prints it (printf "%" PRIX64 of the little-endian value): no zero padding,
    so a key id can show fewer than 16 digits. Newer minisign releases pad to 16."""
    return f"{int.from_bytes(key_id, 'little'):X}"


def decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class PublicKey:
    """A minisign public key: what an operator configures as trusted."""

    key_id: bytes
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key_id) != 8 or len(self.key) != 32:
            raise ValueError("a minisign public key has an 8-byte key id and a 32-byte key")

    @property
    def key_id_hex(self) -> str:
        return format_key_id(self.key_id)

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        """Accept the base64 line ("RWQ...") or a whole .pub file (comment line + base64 line)."""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if len(lines) == 2 and lines[0].startswith("untrusted comment:"):
            lines = lines[1:]
        shown = text.strip()[:60]
        hint = (
            "copy the second line of the publisher's .pub file (it starts with 'RW'), or point to "
            "the whole file"
        )
        if len(lines) != 1:
            raise MinisignKeyError(f"not a minisign public key: {shown!r}", hint=hint)
        raw = decode_base64(lines[0])
        if raw is None or len(raw) != 42:
            raise MinisignKeyError(
                f"not a minisign public key (bad base64 or length): {lines[0][:60]!r}", hint=hint
            )
        if raw[:2] != SIGALG:
            raise MinisignKeyError(
                f"unsupported public key algorithm {raw[:2]!r} in {lines[0][:60]!r}",
                hint=hint,
                reason="unsupported-key",
            )
        return cls(raw[2:10], raw[10:])

    @classmethod
    def load(cls, path: Path | str) -> PublicKey:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MinisignKeyError(f"cannot read public key file: {exc}", where=str(path)) from exc
        try:
            return cls.from_text(text)
        except MinisignKeyError as exc:
            exc.where = str(path)
            raise

    def to_text(self) -> str:
        return encode_base64(SIGALG + self.key_id + self.key)

    def to_file_text(self) -> str:
        return f"{UNTRUSTED_PREFIX}minisign public key {self.key_id_hex}\n{self.to_text()}\n"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def load_public_key(text: str) -> PublicKey:
    """A trusted key as operators give it: the base64 line, or the path of a .pub file."""
    return PublicKey.load(text) if Path(text).is_file() else PublicKey.from_text(text)


def _malformed(what: str) -> VerifyError:
    return VerifyError(
        f"malformed minisign signature: {what}",
        hint="the .minisig file is damaged or is not a minisign signature; the last good feed "
        "stays enforced; check what the server returns for the .minisig URL",
        reason="malformed-signature",
    )


@dataclass(frozen=True)
class Signature:
    """A parsed .minisig file. Only prehashed ("ED") signatures can be built from text."""

    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes
    untrusted_comment: str = DEFAULT_UNTRUSTED_COMMENT
    algorithm: bytes = SIGALG_HASHED

    @property
    def key_id_hex(self) -> str:
        return format_key_id(self.key_id)

    @property
    def timestamp(self) -> int | None:
        return trusted_comment_timestamp(self.trusted_comment)

    @classmethod
    def from_text(cls, text: str | bytes) -> Signature:
        """Parse strictly: four lines exactly as minisign writes them (CRLF tolerated)."""
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogateescape")
        if len(text) > SIGNATURE_TEXT_MAX:
            raise _malformed(f"{len(text)} bytes, more than {SIGNATURE_TEXT_MAX}")
        # surrogateescape keeps a non-UTF-8 trusted comment byte-exact for the global signature.
        lines = text.decode("utf-8", "surrogateescape").split("\n")
        if lines[-1] == "":
            lines.pop()
        lines = [line.removesuffix("\r") for line in lines]
        if len(lines) != 4:
            raise _malformed(f"expected 4 lines, found {len(lines)}")
        if any("\0" in line for line in lines):
            raise _malformed("NUL byte (minisign would read the line differently)")
        untrusted, sig_b64, trusted, global_b64 = lines
        if not untrusted.startswith(UNTRUSTED_PREFIX):
            raise _malformed(f"line 1 does not start with {UNTRUSTED_PREFIX!r}")
        if not trusted.startswith(TRUSTED_PREFIX):
            raise _malformed(f"line 3 does not start with {TRUSTED_PREFIX!r}")
        raw = decode_base64(sig_b64)
        if raw is None or len(raw) != 74:
            raise _malformed(f"line 2 is not base64 of 74 bytes: {sig_b64[:40]!r}")
        global_sig = decode_base64(global_b64)
        if global_sig is None or len(global_sig) != 64:
            raise _malformed(f"line 4 is not base64 of 64 bytes: {global_b64[:40]!r}")
        if raw[:2] == SIGALG:
            key_id = format_key_id(raw[2:10])
            raise VerifyError(
                f"legacy (non-prehashed 'Ed') minisign signature from key {key_id}",
                hint="the publisher must sign with a current minisign (0.8 or later, without -l), "
                "which makes prehashed 'ED' signatures; the last good feed stays enforced",
                reason="legacy-signature",
            )
        if raw[:2] != SIGALG_HASHED:
            raise _malformed(f"unsupported signature algorithm {raw[:2]!r}")
        return cls(
            key_id=raw[2:10],
            signature=raw[10:],
            trusted_comment=trusted[len(TRUSTED_PREFIX) :],
            global_signature=global_sig,
            untrusted_comment=untrusted[len(UNTRUSTED_PREFIX) :],
        )

    def to_text(self) -> str:
        return (
            f"{UNTRUSTED_PREFIX}{self.untrusted_comment}\n"
            f"{encode_base64(self.algorithm + self.key_id + self.signature)}\n"
            f"{TRUSTED_PREFIX}{self.trusted_comment}\n"
            f"{encode_base64(self.global_signature)}\n"
        )

    def signed_comment(self) -> bytes:
        """What the global signature covers: signature || trusted comment bytes."""
        return self.signature + self.trusted_comment.encode("utf-8", "surrogateescape")


def prehash(data: bytes) -> bytes:
    """What a prehashed ("ED") signature signs; one definition for signing and verifying."""
    return hashlib.blake2b(data, digest_size=64).digest()


def verify(data: bytes, sig_text: str | bytes, trusted: Sequence[PublicKey]) -> Signature:
    """Check `sig_text` over `data` against the trusted keys; return the signature or raise.

    Pure: no I/O, no clock. The key id only selects the key; the signature over the data and the
    global signature over the trusted comment must both verify.
    """
    sig = Signature.from_text(sig_text)
    candidates = [k for k in trusted if k.key_id == sig.key_id]
    if not candidates:
        configured = ", ".join(k.key_id_hex for k in trusted) or "none"
        raise VerifyError(
            f"signed by key id {sig.key_id_hex}, which is not a trusted key "
            f"(trusted key ids: {configured})",
            hint="if the publisher announced a new key, check its fingerprint out of band and add "
            "it to the feed's trusted keys (keep the old one during the rotation); otherwise treat "
            "the feed as forged; the last good feed stays enforced",
            reason="unknown-key",
        )
    digest = prehash(data)
    if not any(k.verifies(sig.signature, digest) for k in candidates):
        raise VerifyError(
            f"signature by key {sig.key_id_hex} does not match the data ({len(data)} bytes)",
            hint="the file was altered, truncated or mixed with another version's signature "
            "(e.g. a mirror mid-update); the last good feed stays enforced and the fetch is "
            "retried; if it persists, contact the publisher",
            reason="bad-signature",
        )
    if not any(k.verifies(sig.global_signature, sig.signed_comment()) for k in candidates):
        raise VerifyError(
            f"the trusted comment of the signature by key {sig.key_id_hex} was altered "
            f"(global signature fails): {sig.trusted_comment[:80]!r}",
            hint="someone changed the signed timestamp/comment; treat the feed as tampered; the "
            "last good feed stays enforced",
            reason="bad-signature",
        )
    return sig


def trusted_comment_field(comment: str, field: str) -> str | None:
    """The value of the tab-separated `field:value` part of a trusted comment, or None."""
    for part in comment.split("\t"):
        name, sep, value = part.partition(":")
        if sep and name.strip() == field:
            return value.strip()
    return None


def trusted_comment_timestamp(comment: str) -> int | None:
    """The `timestamp:<unix>` field of a trusted comment (minisign's default is
    "timestamp:<unix>\\tfile:<name>\\thashed"), or None if there is none or it is not a number.

    Simple signed single files have no manifest serial: their signed timestamp is what rollback
    protection compares.
    """
    value = trusted_comment_field(comment, "timestamp")
    return int(value) if value is not None and _TIMESTAMP.fullmatch(value) else None
