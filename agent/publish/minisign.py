"""In-process minisign, the signing half: secret keys (scrypt-encrypted like `minisign -G`), key
generation and signing, for the publisher commands. The verifying half, and the public key and
signature formats, are `agent.verify.minisign`; this half only adds what a publisher holds.

Secret key format (standard base64 on one line):
  "Ed" | kdf ("Sc" or 0 0) | "B2" | salt (32) | opslimit (8 LE) | memlimit (8 LE) |
  key id (8) | libsodium secret key = seed || public key (64) | BLAKE2b-256 checksum (32), the last
  three XOR-ed with a scrypt stream when a password is set.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.verify.minisign import (
    DEFAULT_UNTRUSTED_COMMENT,
    SIGALG,
    TRUSTED_PREFIX,
    UNTRUSTED_PREFIX,
    MinisignKeyError,
    PublicKey,
    Signature,
    decode_base64,
    encode_base64,
    format_key_id,
    prehash,
)

KDF_SCRYPT = b"Sc"
KDF_NONE = b"\x00\x00"
CHK_BLAKE2B = b"B2"
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

_SK_LEN = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32


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
        return format_key_id(self.key_id)

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
        raw = decode_base64(lines[0]) if len(lines) == 1 else None
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
        return f"{UNTRUSTED_PREFIX}{SECRET_KEY_COMMENT}\n{encode_base64(header + body)}\n"


def generate_keypair() -> tuple[PublicKey, SecretKey]:
    """A new Ed25519 key pair with a random key id, as `minisign -G` makes."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    secret = SecretKey(os.urandom(8), seed)
    return secret.public_key, secret


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
    signature = key.sign_raw(prehash(data))
    partial = Signature(key.key_id, signature, trusted_comment, bytes(64), untrusted_comment)
    global_sig = key.sign_raw(partial.signed_comment())
    return Signature(
        key.key_id, signature, trusted_comment, global_sig, untrusted_comment
    ).to_text()
