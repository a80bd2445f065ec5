"""In-process minisign: keys, signatures, signing and verification (design section 2).

The agent verifies feeds with `cryptography` (Ed25519) and `hashlib` (BLAKE2b, scrypt) instead of
running the `minisign` binary, so that verification is a pure function of bytes that tests can
drive and that never depends on a tool's exit codes or output wording. The formats are exactly
minisign's, and the test suite checks interop with Debian's `minisign` in both directions.

Formats (all binary blobs are standard base64 on one line):
- public key:  "Ed" | key id (8) | Ed25519 public key (32)
- signature:   "ED" | key id (8) | Ed25519 signature over BLAKE2b-512(data) (64), then a trusted
  comment and a global signature over (signature || trusted comment bytes)
- secret key:  "Ed" | kdf ("Sc" or 0 0) | "B2" | salt (32) | opslimit (8 LE) | memlimit (8 LE) |
  key id (8) | libsodium secret key = seed || public key (64) | BLAKE2b-256 checksum (32), the last
  three XOR-ed with a scrypt stream when a password is set.
The key id is shown as minisign 0.11 shows it: the 8 bytes read as a little-endian integer, in
upper-case hex without zero padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import AgentError, VerifyError

SIGALG = b"Ed"  # public/secret keys, and legacy (non-prehashed) signatures
SIGALG_HASHED = b"ED"
KDF_SCRYPT = b"Sc"
KDF_NONE = b"\x00\x00"
CHK_BLAKE2B = b"B2"

UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "
DEFAULT_UNTRUSTED_COMMENT = "signature from blocklist-agent secret key"
SECRET_KEY_COMMENT = "minisign encrypted secret key"  # minisign writes this even with -W

# libsodium crypto_pwhash_scryptsalsa208sha256 *_SENSITIVE: what `minisign -G` always uses
# (N=2^20, r=8, p=1: 1 GiB of memory, a few seconds).
OPSLIMIT_SENSITIVE = 33554432
MEMLIMIT_SENSITIVE = 1073741824
OPSLIMIT_MIN = 32768
MEMLIMIT_MIN = 16777216

# minisign's own line limits (COMMENTMAXBYTES, TRUSTEDCOMMENTMAXBYTES minus prefix and NUL):
# longer lines are split by its fgets() and the file no longer parses there.
UNTRUSTED_COMMENT_MAX = 1024 - len(UNTRUSTED_PREFIX) - 2
TRUSTED_COMMENT_MAX = 8192 - len(TRUSTED_PREFIX) - 2
SIGNATURE_TEXT_MAX = 16384

_SK_LEN = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32
_TIMESTAMP = re.compile(r"[0-9]{1,19}")


class MinisignKeyError(AgentError):
    """A key file or key string cannot be used. reason: bad-key, password-required,
    wrong-password, unsupported-key."""

    default_reason = "bad-key"


def _key_id_hex(key_id: bytes) -> str:
    """As minisign 0.11 prints it (printf "%" PRIX64 of the little-endian value): no zero padding,
    so a key id can show fewer than 16 digits. Newer minisign releases pad to 16."""
    return f"{int.from_bytes(key_id, 'little'):X}"


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64encode(data: bytes) -> str:
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
        return _key_id_hex(self.key_id)

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
        raw = _b64decode(lines[0])
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
        return _b64encode(SIGALG + self.key_id + self.key)

    def to_file_text(self) -> str:
        return f"{UNTRUSTED_PREFIX}minisign public key {self.key_id_hex}\n{self.to_text()}\n"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def _scrypt_params(opslimit: int, memlimit: int) -> tuple[int, int, int]:
    """N, r, p exactly as libsodium's pickparams() derives them for scryptsalsa208sha256."""
    opslimit = max(opslimit, 32768)
    r = 8
    cpu_bound = opslimit < memlimit // 32
    max_n = opslimit // (r * 4) if cpu_bound else memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    if cpu_bound:
        return 1 << n_log2, r, 1
    max_rp = min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF)
    return 1 << n_log2, r, max_rp // r


def _scrypt_stream(password: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    n, r, p = _scrypt_params(opslimit, memlimit)
    if n > 1 << 24 or not 1 <= p <= 16:
        raise MinisignKeyError(
            f"unsupported scrypt parameters in the secret key (opslimit {opslimit}, memlimit "
            f"{memlimit}: N={n}, r={r}, p={p})",
            hint="re-encrypt the key with `minisign -C`",
            reason="unsupported-key",
        )
    maxmem = 128 * r * (n + 2) + 128 * r * p + (1 << 20)  # OpenSSL's own accounting, plus slack
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=_SK_LEN - 54)


def _checksum(key_id: bytes, sk: bytes) -> bytes:
    return hashlib.blake2b(SIGALG + key_id + sk, digest_size=32).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, repr=False)
class SecretKey:
    """A minisign secret key (Ed25519 seed plus key id). repr() never shows the seed."""

    key_id: bytes
    seed: bytes = field(compare=False)

    def __post_init__(self) -> None:
        if len(self.key_id) != 8 or len(self.seed) != 32:
            raise ValueError("a minisign secret key has an 8-byte key id and a 32-byte seed")

    def __repr__(self) -> str:
        return f"SecretKey(key_id={self.key_id_hex})"

    @property
    def key_id_hex(self) -> str:
        return _key_id_hex(self.key_id)

    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_key(self) -> PublicKey:
        raw = (
            self._private()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return PublicKey(self.key_id, raw)

    def sign_raw(self, message: bytes) -> bytes:
        return self._private().sign(message)

    @classmethod
    def from_text(cls, text: str, password: bytes | None) -> SecretKey:
        """Parse a minisign secret key file's contents, decrypting it when it has a password."""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if lines and lines[0].startswith("untrusted comment:"):
            lines = lines[1:]
        raw = _b64decode(lines[0]) if len(lines) == 1 else None
        if raw is None or len(raw) != _SK_LEN:
            raise MinisignKeyError(
                "not a minisign secret key file (expected a comment line and one base64 line of "
                f"{_SK_LEN} bytes)",
                hint="give the .key file written by `minisign -G` or `blocklist-agent keygen`",
            )
        sig_alg, kdf, chk_alg = raw[0:2], raw[2:4], raw[4:6]
        salt, ops, mem, rest = raw[6:38], raw[38:46], raw[46:54], raw[54:]
        if sig_alg != SIGALG or chk_alg != CHK_BLAKE2B or kdf not in (KDF_SCRYPT, KDF_NONE):
            raise MinisignKeyError(
                f"unsupported secret key (algorithm {sig_alg!r}, kdf {kdf!r}, checksum "
                f"{chk_alg!r})",
                hint="only minisign Ed25519 keys are supported",
                reason="unsupported-key",
            )
        if kdf == KDF_SCRYPT:
            if password is None:
                raise MinisignKeyError(
                    "the secret key is protected by a password and none was given",
                    hint="give the key's password, or remove it with `minisign -C -W`",
                    reason="password-required",
                )
            stream = _scrypt_stream(
                password, salt, int.from_bytes(ops, "little"), int.from_bytes(mem, "little")
            )
            rest = _xor(rest, stream)
        key_id, sk, chk = rest[0:8], rest[8:72], rest[72:104]
        # minisign 0.11 leaves the checksum zero in unencrypted (-W) keys and never checks it there.
        if (kdf == KDF_SCRYPT or any(chk)) and not hmac.compare_digest(chk, _checksum(key_id, sk)):
            if kdf == KDF_SCRYPT:
                raise MinisignKeyError(
                    "wrong password for this secret key (its checksum does not match)",
                    hint="type the password again; it is the one given to `minisign -G`/`-C`",
                    reason="wrong-password",
                )
            raise MinisignKeyError(
                "the secret key file is corrupted (checksum mismatch)",
                hint="restore the key from its backup",
            )
        key = cls(key_id, sk[:32])
        if key.public_key.key != sk[32:]:
            raise MinisignKeyError(
                "the secret key file is corrupted (its public half does not match its seed)",
                hint="restore the key from its backup",
            )
        return key

    @classmethod
    def load(cls, path: Path | str, password: bytes | None) -> SecretKey:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MinisignKeyError(f"cannot read secret key file: {exc}", where=str(path)) from exc
        try:
            return cls.from_text(text, password)
        except MinisignKeyError as exc:
            exc.where = str(path)
            raise

    def to_file_text(
        self,
        password: bytes | None,
        *,
        opslimit: int = OPSLIMIT_SENSITIVE,
        memlimit: int = MEMLIMIT_SENSITIVE,
    ) -> str:
        """The key in minisign's file format; scrypt-encrypted like `minisign -G` if a password
        is given (with minisign's cost, halved while memory is short, as minisign does)."""
        sk = self.seed + self.public_key.key
        body = self.key_id + sk + _checksum(self.key_id, sk)
        if password is None:
            header = SIGALG + KDF_NONE + CHK_BLAKE2B + bytes(48)
        else:
            if not password:
                raise ValueError("empty password: pass None for an unencrypted key")
            salt = os.urandom(32)
            while True:
                try:
                    stream = _scrypt_stream(password, salt, opslimit, memlimit)
                    break
                except (MemoryError, ValueError):
                    opslimit, memlimit = opslimit // 2, memlimit // 2
                    if opslimit < OPSLIMIT_MIN or memlimit < MEMLIMIT_MIN:
                        raise
            header = (
                SIGALG
                + KDF_SCRYPT
                + CHK_BLAKE2B
                + salt
                + opslimit.to_bytes(8, "little")
                + memlimit.to_bytes(8, "little")
            )
            body = _xor(body, stream)
        return f"{UNTRUSTED_PREFIX}{SECRET_KEY_COMMENT}\n{_b64encode(header + body)}\n"


def load_public_key(text: str) -> PublicKey:
    """A trusted key as operators give it: the base64 line, or the path of a .pub file."""
    return PublicKey.load(text) if Path(text).is_file() else PublicKey.from_text(text)


def generate_keypair() -> tuple[PublicKey, SecretKey]:
    """A new Ed25519 key pair with a random key id, as `minisign -G` makes."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    secret = SecretKey(os.urandom(8), seed)
    return secret.public_key, secret


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
        return _key_id_hex(self.key_id)

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
        raw = _b64decode(sig_b64)
        if raw is None or len(raw) != 74:
            raise _malformed(f"line 2 is not base64 of 74 bytes: {sig_b64[:40]!r}")
        global_sig = _b64decode(global_b64)
        if global_sig is None or len(global_sig) != 64:
            raise _malformed(f"line 4 is not base64 of 64 bytes: {global_b64[:40]!r}")
        if raw[:2] == SIGALG:
            raise VerifyError(
                f"legacy (non-prehashed 'Ed') minisign signature from key {_key_id_hex(raw[2:10])}",
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
            f"{_b64encode(self.algorithm + self.key_id + self.signature)}\n"
            f"{TRUSTED_PREFIX}{self.trusted_comment}\n"
            f"{_b64encode(self.global_signature)}\n"
        )

    def signed_comment(self) -> bytes:
        """What the global signature covers: signature || trusted comment bytes."""
        return self.signature + self.trusted_comment.encode("utf-8", "surrogateescape")


def _prehash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=64).digest()


def sign(
    data: bytes,
    key: SecretKey,
    *,
    trusted_comment: str,
    untrusted_comment: str = DEFAULT_UNTRUSTED_COMMENT,
) -> str:
    """The .minisig text for `data`, prehashed ("ED") like `minisign -S` does by default."""
    for name, comment in (("trusted", trusted_comment), ("untrusted", untrusted_comment)):
        if "\n" in comment or "\r" in comment:
            raise ValueError(f"the {name} comment must be one line: {comment!r}")
        if "\0" in comment:
            raise ValueError(f"the {name} comment must not contain NUL: {comment!r}")
    if len(trusted_comment.encode("utf-8", "surrogateescape")) > TRUSTED_COMMENT_MAX:
        raise ValueError(f"the trusted comment is longer than {TRUSTED_COMMENT_MAX} bytes")
    if len(untrusted_comment.encode("utf-8", "surrogateescape")) > UNTRUSTED_COMMENT_MAX:
        raise ValueError(f"the untrusted comment is longer than {UNTRUSTED_COMMENT_MAX} bytes")
    signature = key.sign_raw(_prehash(data))
    partial = Signature(key.key_id, signature, trusted_comment, bytes(64), untrusted_comment)
    global_sig = key.sign_raw(partial.signed_comment())
    return Signature(
        key.key_id, signature, trusted_comment, global_sig, untrusted_comment
    ).to_text()


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
    digest = _prehash(data)
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


def trusted_comment_timestamp(comment: str) -> int | None:
    """The `timestamp:<unix>` field of a trusted comment (minisign's default is
    "timestamp:<unix>\\tfile:<name>\\thashed"), or None if there is none or it is not a number.

    Simple signed single files have no manifest serial: their signed timestamp is what rollback
    protection compares.
    """
    for part in comment.split("\t"):
        name, sep, value = part.partition(":")
        if sep and name.strip() == "timestamp" and _TIMESTAMP.fullmatch(value.strip()):
            return int(value.strip())
    return None
