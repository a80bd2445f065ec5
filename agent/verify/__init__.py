"""Feed verification, in one place: signatures and manifest rules as pure functions (`minisign`,
`manifest`), and `feed`, which gets one feed through a Fetcher and verifies it before any use."""

from agent.verify.manifest import (
    FORMAT,
    MANIFEST_NAME,
    MAX_SERIAL,
    SIGNATURE_NAME,
    LastAccepted,
    Manifest,
    Payload,
    check_manifest,
    check_payload,
    parse_manifest,
    payload_path_error,
    verify_manifest,
)
from agent.verify.minisign import MinisignKeyError, PublicKey, Signature, load_public_key

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "MAX_SERIAL",
    "SIGNATURE_NAME",
    "LastAccepted",
    "Manifest",
    "MinisignKeyError",
    "Payload",
    "PublicKey",
    "Signature",
    "check_manifest",
    "check_payload",
    "load_public_key",
    "parse_manifest",
    "payload_path_error",
    "verify_manifest",
]
