"""agent.verify: the pure feed rules (signature first, strict manifest, freshness, rollback)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.errors import VerifyError
from agent.publish.minisign import SecretKey, generate_keypair, sign
from agent.verify import (
    LastAccepted,
    Manifest,
    Payload,
    check_manifest,
    check_payload,
    parse_manifest,
    payload_path_error,
    verify_manifest,
)
from agent.verify import manifest as verify_mod
from agent.verify.minisign import PublicKey

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
PAYLOAD = b"192.0.2.1\nevil.example\n"
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": "blocklist-feed/1",
        "publisher": "CERT Santé (example)",
        "serial": 42,
        "issued": "2026-11-23T10:00:00Z",
        "expires": "2026-11-30T10:00:00Z",
        "payloads": [
            {
                "path": "indicators.txt",
                "format": "plain",
                "sha256": PAYLOAD_SHA,
                "size": len(PAYLOAD),
            }
        ],
    }
    base.update(overrides)
    return base


def encode(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()


def payload(**overrides: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"path": "indicators.txt", "sha256": PAYLOAD_SHA, "size": len(PAYLOAD)}
    p.update(overrides)
    return p


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, SecretKey]:
    return generate_keypair()


def signed(data: bytes, secret: SecretKey) -> bytes:
    return sign(data, secret, trusted_comment="timestamp:1795000000\tfile:manifest.json").encode()


def reason_of(exc: pytest.ExceptionInfo[VerifyError]) -> str:
    return exc.value.reason


# --- happy path and signature ordering -----------------------------------------------------------


def test_verify_manifest_returns_the_parsed_manifest(keys: tuple[PublicKey, SecretKey]) -> None:
    public, secret = keys
    data = encode(doc())
    m = verify_manifest(data, signed(data, secret), [public], now=NOW, last=None)
    assert m == Manifest(
        format="blocklist-feed/1",
        publisher="CERT Santé (example)",
        serial=42,
        issued=datetime(2026, 11, 23, 10, tzinfo=UTC),
        expires=datetime(2026, 11, 30, 10, tzinfo=UTC),
        payloads=(Payload("indicators.txt", "plain", PAYLOAD_SHA, len(PAYLOAD)),),
        sha256=hashlib.sha256(data).hexdigest(),
        key_id=public.key_id_hex,
    )


def test_signature_is_checked_before_any_json_is_parsed(
    keys: tuple[PublicKey, SecretKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, secret = keys
    garbage = b"{not json"

    def must_not_parse(*args: object, **kwargs: object) -> Manifest:
        raise AssertionError("parsed before the signature was verified")

    monkeypatch.setattr(verify_mod, "parse_manifest", must_not_parse)
    other = generate_keypair()[1]
    with pytest.raises(VerifyError) as info:
        verify_manifest(garbage, signed(garbage, other), [public], now=NOW, last=None)
    assert reason_of(info) == "unknown-key"
    assert info.value.where == "manifest.json.minisig"
    with pytest.raises(VerifyError) as info:
        verify_manifest(garbage, signed(b"{}", secret), [public], now=NOW, last=None)
    assert reason_of(info) == "bad-signature"


def test_validly_signed_garbage_is_malformed_manifest(keys: tuple[PublicKey, SecretKey]) -> None:
    public, secret = keys
    with pytest.raises(VerifyError) as info:
        verify_manifest(b"{not json", signed(b"{not json", secret), [public], now=NOW, last=None)
    assert reason_of(info) == "malformed-manifest"
    assert info.value.where == "manifest.json"


def test_manifest_signed_by_real_minisign_verifies(tmp_path: Path) -> None:
    subprocess.run(
        ["/usr/bin/minisign", "-G", "-W", "-p", "k.pub", "-s", "k.key"],
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        capture_output=True,
        check=True,
    )
    data = encode(doc())
    (tmp_path / "manifest.json").write_bytes(data)
    subprocess.run(
        ["/usr/bin/minisign", "-S", "-s", "k.key", "-m", "manifest.json"],
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        capture_output=True,
        check=True,
    )
    public = PublicKey.load(tmp_path / "k.pub")
    sig = (tmp_path / "manifest.json.minisig").read_bytes()
    m = verify_manifest(data, sig, [public], now=NOW, last=None)
    assert (m.serial, m.key_id) == (42, public.key_id_hex)


# --- rollback, replay, freshness -----------------------------------------------------------------


def _m(**overrides: Any) -> Manifest:
    return parse_manifest(encode(doc(**overrides)))


def test_rollback_is_refused() -> None:
    m = _m(serial=41)
    with pytest.raises(VerifyError) as info:
        check_manifest(m, now=NOW, last=LastAccepted(42, "0" * 64))
    assert reason_of(info) == "rollback"
    assert "41" in info.value.what and "42" in info.value.what


def test_same_serial_other_content_is_replay_alarm() -> None:
    m = _m()
    with pytest.raises(VerifyError) as info:
        check_manifest(m, now=NOW, last=LastAccepted(42, "a" * 64))
    assert reason_of(info) == "replay"
    assert "ALARM" in info.value.what and m.sha256 in info.value.what
    assert "key may be misused" in info.value.hint


def test_same_serial_same_content_is_accepted() -> None:
    m = _m()
    check_manifest(m, now=NOW, last=LastAccepted(42, m.sha256))


def test_higher_serial_is_accepted() -> None:
    check_manifest(_m(serial=43), now=NOW, last=LastAccepted(42, "a" * 64))
    check_manifest(_m(serial=0), now=NOW, last=None)


@pytest.mark.parametrize("expires", ["2026-11-23T12:00:00Z", "2026-11-23T11:59:59Z"])
def test_expired_is_refused_and_says_who_must_act(expires: str) -> None:
    with pytest.raises(VerifyError) as info:
        check_manifest(_m(issued="2026-11-20T00:00:00Z", expires=expires), now=NOW, last=None)
    assert reason_of(info) == "expired"
    assert "2026-11-23 1" in info.value.what
    assert "re-sign" in info.value.hint and "last good feed stays enforced" in info.value.hint


def test_one_second_before_expiry_is_accepted() -> None:
    check_manifest(_m(expires="2026-11-23T12:00:01Z"), now=NOW, last=None)


def test_issued_in_the_future_beyond_skew_is_refused() -> None:
    with pytest.raises(VerifyError) as info:
        check_manifest(_m(issued="2026-11-23T12:05:01Z"), now=NOW, last=None)
    assert reason_of(info) == "future"
    assert "NTP" in info.value.hint


def test_issued_within_clock_skew_is_accepted() -> None:
    check_manifest(_m(issued="2026-11-23T12:05:00Z"), now=NOW, last=None)
    with pytest.raises(VerifyError):
        check_manifest(
            _m(issued="2026-11-23T12:05:00Z"), now=NOW, last=None, max_clock_skew=timedelta(0)
        )


def test_issued_after_expires_is_malformed() -> None:
    m = _m(issued="2026-11-24T00:00:00Z", expires="2026-11-23T13:00:00Z")
    with pytest.raises(VerifyError) as info:
        check_manifest(m, now=NOW, last=None)
    assert reason_of(info) == "malformed-manifest"


def test_old_replayed_feed_reports_rollback_before_expiry() -> None:
    m = _m(serial=3, issued="2026-01-01T00:00:00Z", expires="2026-01-08T00:00:00Z")
    with pytest.raises(VerifyError) as info:
        check_manifest(m, now=NOW, last=LastAccepted(42, "a" * 64))
    assert reason_of(info) == "rollback"


def test_same_feed_refetched_after_expiry_is_expired() -> None:
    m = _m(expires="2026-11-23T11:00:00Z")
    with pytest.raises(VerifyError) as info:
        check_manifest(m, now=NOW, last=LastAccepted(42, m.sha256))
    assert reason_of(info) == "expired"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        check_manifest(_m(), now=NOW.replace(tzinfo=None), last=None)


def test_verify_manifest_applies_the_rules(keys: tuple[PublicKey, SecretKey]) -> None:
    public, secret = keys
    data = encode(doc(serial=7))
    with pytest.raises(VerifyError) as info:
        verify_manifest(data, signed(data, secret), [public], now=NOW, last=LastAccepted(8, "x"))
    assert reason_of(info) == "rollback"


# --- strict parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        (doc(format="blocklist-feed/2"), "'format'"),
        (doc(format="Blocklist-Feed/1"), "Blocklist-Feed/1"),
        (doc(serial=-1), "'serial'"),
        (doc(serial=1.0), "1.0"),
        (doc(serial=True), "True"),
        (doc(serial="42"), "'42'"),
        (doc(serial=2**63), "'serial'"),
        (doc(publisher=""), "'publisher'"),
        (doc(issued="2026-11-23T10:00:00+01:00"), "+01:00"),
        (doc(issued="2026-11-23 10:00:00Z"), "'issued'"),
        (doc(expires="2026-11-30T10:00:00"), "'expires'"),
        (doc(expires="2026-13-30T10:00:00Z"), "2026-13-30"),
        (doc(expires=1795000000), "1795000000"),
        (doc(payloads=[]), "'payloads'"),
        (doc(payloads={"path": "x"}), "'payloads'"),
        (doc(payloads=[payload(), payload()]), "listed twice"),
        (doc(payloads=[payload(sha256=PAYLOAD_SHA.upper())]), "sha256"),
        (doc(payloads=[payload(sha256="abc")]), "'abc'"),
        (doc(payloads=[payload(size=-1)]), "size"),
        (doc(payloads=[payload(size="12")]), "'12'"),
        (doc(payloads=[payload(format="")]), "format"),
        (doc(payloads=[payload(format="plain text")]), "plain text"),
        (doc(payloads=[payload(fromat="plain")]), "fromat"),
        (doc(payloads=[{"path": "x"}]), "sha256"),
        (doc(payloads=["indicators.txt"]), "payloads[0]"),
        (doc(extra=1), "extra"),
        ({k: v for k, v in doc().items() if k != "expires"}, "expires"),
        ([doc()], "object"),
    ],
)
def test_malformed_manifests_are_refused_naming_field_and_value(obj: Any, needle: str) -> None:
    with pytest.raises(VerifyError) as info:
        parse_manifest(encode(obj))
    assert reason_of(info) == "malformed-manifest"
    assert needle in info.value.what


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "a/../../b",
        "..",
        "/etc/passwd",
        "https://evil.example/x",
        "C:list.txt",
        "sub\\list.txt",
        "",
        "./list.txt",
        "a//b",
        "dir/",
        "list\n.txt",
        "manifest.json",
        "manifest.json.minisig",
    ],
)
def test_unsafe_payload_paths_are_refused(path: str) -> None:
    assert payload_path_error(path) is not None
    with pytest.raises(VerifyError) as info:
        parse_manifest(encode(doc(payloads=[payload(path=path)])))
    assert reason_of(info) == "malformed-manifest"
    assert repr(path)[:60] in info.value.what


@pytest.mark.parametrize("path", ["indicators.txt", "sub/dir/list.csv", "a..b", ".hidden"])
def test_plain_relative_payload_paths_are_accepted(path: str) -> None:
    m = parse_manifest(encode(doc(payloads=[payload(path=path)])))
    assert m.payloads[0].path == path


@pytest.mark.parametrize(
    "raw",
    [
        b'{"serial": 1, "serial": 2}',
        b'{"format": "blocklist-feed/1", "serial": NaN}',
        b"\xff\xfe{}",
        b"",
    ],
)
def test_duplicate_keys_nan_and_non_utf8_are_refused(raw: bytes) -> None:
    with pytest.raises(VerifyError) as info:
        parse_manifest(raw)
    assert reason_of(info) == "malformed-manifest"


def test_payload_format_defaults_to_auto_and_times_are_aware_utc() -> None:
    m = parse_manifest(encode(doc(issued="2026-11-23T10:00:00.5+00:00", payloads=[payload()])))
    assert m.payloads[0].format == "auto"
    assert m.issued == datetime(2026, 11, 23, 10, 0, 0, 500000, tzinfo=UTC)
    assert m.issued.utcoffset() == timedelta(0)
    assert m.key_id == ""


# --- payloads ------------------------------------------------------------------------------------


def test_matching_payload_passes() -> None:
    check_payload(Payload("indicators.txt", "plain", PAYLOAD_SHA, len(PAYLOAD)), PAYLOAD)


def test_payload_size_mismatch_is_refused() -> None:
    p = Payload("indicators.txt", "plain", PAYLOAD_SHA, len(PAYLOAD))
    for data in (PAYLOAD + b"198.51.100.7\n", PAYLOAD[:-1]):
        with pytest.raises(VerifyError) as info:
            check_payload(p, data)
        assert reason_of(info) == "payload-size"
        assert info.value.where == "indicators.txt"
        assert str(len(data)) in info.value.what


def test_payload_hash_mismatch_with_same_size_is_refused() -> None:
    p = Payload("indicators.txt", "plain", PAYLOAD_SHA, len(PAYLOAD))
    forged = PAYLOAD.replace(b"192.0.2.1", b"192.0.2.9")
    with pytest.raises(VerifyError) as info:
        check_payload(p, forged)
    assert reason_of(info) == "payload-hash"
    assert hashlib.sha256(forged).hexdigest() in info.value.what
