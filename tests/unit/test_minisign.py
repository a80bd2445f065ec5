"""agent.minisign: formats, refusals, and interop both ways with Debian's real `minisign` binary."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest

from agent.errors import VerifyError
from agent.publish import minisign
from agent.publish.minisign import SecretKey, generate_keypair, sign
from agent.verify.minisign import (
    MinisignKeyError,
    PublicKey,
    Signature,
    trusted_comment_timestamp,
    verify,
)

MINISIGN = "/usr/bin/minisign"
# Cheap scrypt cost for tests (N=2^10); minisign reads the cost from the key file.
LIGHT = {"opslimit": minisign.OPSLIMIT_MIN, "memlimit": minisign.MEMLIMIT_MIN}
DATA = b'{"format": "blocklist-feed/1", "serial": 1}\n'


def run_minisign(
    *args: str | bytes | Path, cwd: Path, stdin: bytes = b"", check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run the real binary with HOME in the test dir, so it never touches ~/.minisign."""
    proc = subprocess.run(
        [MINISIGN, *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={"HOME": str(cwd), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"minisign {args} failed: {proc.stdout!r} {proc.stderr!r}")
    return proc


@pytest.fixture(scope="module")
def ms_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """An unencrypted key pair made by `minisign -G -W`: (dir, pub, key)."""
    d = tmp_path_factory.mktemp("mskeys")
    run_minisign("-G", "-W", "-p", "k.pub", "-s", "k.key", cwd=d)
    return d, d / "k.pub", d / "k.key"


@pytest.fixture(scope="module")
def ms_password_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A password-protected pair made by `minisign -G`; 0.11 reads the password (twice) from
    stdin when it is not a terminal, so this is scriptable. Uses minisign's 1 GiB scrypt."""
    d = tmp_path_factory.mktemp("mspwkeys")
    run_minisign("-G", "-p", "k.pub", "-s", "k.key", cwd=d, stdin=b"s3cret pw\ns3cret pw\n")
    return d, d / "k.pub", d / "k.key"


@pytest.fixture(scope="module")
def ms_password_secret(ms_password_keys: tuple[Path, Path, Path]) -> SecretKey:
    return SecretKey.load(ms_password_keys[2], b"s3cret pw")


def _sig_lines(sig_text: str) -> list[str]:
    return sig_text.rstrip("\n").split("\n")


def _flip_b64(line: str, index: int) -> str:
    raw = bytearray(base64.b64decode(line))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- public keys ---------------------------------------------------------------------------------


def test_public_key_reads_minisign_pub_file_and_writes_it_identically(
    ms_keys: tuple[Path, Path, Path],
) -> None:
    _, pub_path, _ = ms_keys
    text = pub_path.read_text()
    key = PublicKey.load(pub_path)
    assert PublicKey.from_text(text.splitlines()[1]) == key
    assert key.to_file_text() == text
    assert key.to_text() == text.splitlines()[1]
    # minisign's own comment line shows the key id the way key_id_hex does
    assert text.splitlines()[0] == f"untrusted comment: minisign public key {key.key_id_hex}"


def test_key_id_hex_is_little_endian_unpadded_like_minisign_0_11() -> None:
    key = PublicKey(bytes.fromhex("238b3a4c3bc22b37"), bytes(32))
    assert key.key_id_hex == "372BC23B4C3A8B23"
    # Debian's minisign 0.11 prints "%" PRIX64: a leading zero nibble is dropped
    assert PublicKey(bytes.fromhex("53fe4373134c6b07"), bytes(32)).key_id_hex == "76B4C137343FE53"


def test_key_id_hex_matches_minisign_for_many_keys(tmp_path: Path) -> None:
    """1 key in 16 has a leading zero nibble; 40 keys make a miss of that case unlikely."""
    for i in range(40):
        run_minisign("-G", "-W", "-p", f"{i}.pub", "-s", f"{i}.key", cwd=tmp_path)
        text = (tmp_path / f"{i}.pub").read_text()
        assert PublicKey.from_text(text).to_file_text() == text


def test_unknown_key_message_uses_the_id_minisign_prints(
    ms_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub_path, _ = ms_keys
    public, secret = generate_keypair()
    (tmp_path / "f").write_bytes(DATA)
    (tmp_path / "f.minisig").write_text(sign(DATA, secret, trusted_comment="x"))
    proc = run_minisign("-V", "-p", pub_path, "-m", "f", cwd=tmp_path, check=False)
    with pytest.raises(VerifyError) as info:
        verify(DATA, (tmp_path / "f.minisig").read_text(), [PublicKey.load(pub_path)])
    found, configured = public.key_id_hex, PublicKey.load(pub_path).key_id_hex
    assert f"is {found}\n".encode() in proc.stderr
    assert f"public key is {configured}\n".encode() in proc.stderr
    assert found in info.value.what and configured in info.value.what


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64 at all!",
        "RWQjizpMO8IrN/NmywBFnpL6kJJHkYgrIYyMjIRy9B60sQ6EAcXu6Pl",  # truncated
        base64.b64encode(b"Ed" + bytes(41)).decode(),  # one byte too many
        base64.b64encode(b"XX" + bytes(40)).decode(),  # right length, other algorithm
        "untrusted comment: a\nRWQ\nRWQ\n",
    ],
)
def test_public_key_refuses_malformed_text(text: str) -> None:
    with pytest.raises(MinisignKeyError) as info:
        PublicKey.from_text(text)
    assert info.value.reason in ("bad-key", "unsupported-key")


def test_public_key_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pub"
    path.write_text("untrusted comment: x\nnope\n")
    with pytest.raises(MinisignKeyError) as info:
        PublicKey.load(path)
    assert info.value.where == str(path)


# --- minisign signs, we verify -------------------------------------------------------------------


def test_minisign_signature_verifies_in_process(
    ms_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub_path, key_path = ms_keys
    (tmp_path / "manifest.json").write_bytes(DATA)
    before = int(time.time())
    run_minisign("-S", "-s", key_path, "-m", "manifest.json", cwd=tmp_path)
    sig_text = (tmp_path / "manifest.json.minisig").read_bytes()
    sig = verify(DATA, sig_text, [PublicKey.load(pub_path)])
    assert sig.key_id_hex == PublicKey.load(pub_path).key_id_hex
    assert sig.trusted_comment.endswith("\tfile:manifest.json\thashed")
    assert sig.timestamp is not None and before <= sig.timestamp <= int(time.time())
    assert sig.untrusted_comment == "signature from minisign secret key"


def test_minisign_custom_comments_are_parsed_byte_exact(
    ms_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub_path, key_path = ms_keys
    (tmp_path / "f").write_bytes(DATA)
    # a non-UTF-8 trusted comment must still verify: the global signature covers raw bytes
    run_minisign(
        "-S", "-s", key_path, "-m", "f", "-t", b"serial:7 caf\xe9", "-c", "hello", cwd=tmp_path
    )
    sig = verify(DATA, (tmp_path / "f.minisig").read_bytes(), [PublicKey.load(pub_path)])
    assert sig.trusted_comment.encode("utf-8", "surrogateescape") == b"serial:7 caf\xe9"
    assert sig.untrusted_comment == "hello"
    assert sig.timestamp is None


@pytest.mark.slow
def test_minisign_password_key_signature_verifies_in_process(
    ms_password_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub_path, key_path = ms_password_keys
    (tmp_path / "f").write_bytes(DATA)
    run_minisign("-S", "-s", key_path, "-m", "f", cwd=tmp_path, stdin=b"s3cret pw\n")
    sig = verify(DATA, (tmp_path / "f.minisig").read_text(), [PublicKey.load(pub_path)])
    assert sig.trusted_comment.endswith("file:f\thashed")


def test_legacy_signature_from_minisign_l_is_refused(
    ms_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub_path, key_path = ms_keys
    (tmp_path / "f").write_bytes(DATA)
    run_minisign("-S", "-l", "-s", key_path, "-m", "f", cwd=tmp_path)
    sig_text = (tmp_path / "f.minisig").read_text()
    assert base64.b64decode(_sig_lines(sig_text)[1])[:2] == b"Ed"  # really legacy
    with pytest.raises(VerifyError) as info:
        verify(DATA, sig_text, [PublicKey.load(pub_path)])
    assert info.value.reason == "legacy-signature"
    assert PublicKey.load(pub_path).key_id_hex in info.value.what


# --- we sign, minisign verifies ------------------------------------------------------------------


@pytest.fixture
def signed_by_us(tmp_path: Path) -> tuple[Path, PublicKey, SecretKey]:
    public, secret = generate_keypair()
    (tmp_path / "key.pub").write_text(public.to_file_text())
    (tmp_path / "f").write_bytes(DATA)
    sig = sign(DATA, secret, trusted_comment="timestamp:1700000000\tfile:f\thashed\tserial:3")
    (tmp_path / "f.minisig").write_text(sig)
    return tmp_path, public, secret


def test_our_signature_verifies_with_minisign_pub_file(
    signed_by_us: tuple[Path, PublicKey, SecretKey],
) -> None:
    d, _, _ = signed_by_us
    proc = run_minisign("-V", "-H", "-p", "key.pub", "-m", "f", cwd=d)
    assert b"Signature and comment signature verified" in proc.stdout
    assert b"Trusted comment: timestamp:1700000000\tfile:f\thashed\tserial:3" in proc.stdout


def test_our_signature_verifies_with_minisign_inline_key(
    signed_by_us: tuple[Path, PublicKey, SecretKey],
) -> None:
    d, public, _ = signed_by_us
    run_minisign("-Vm", "f", "-P", public.to_text(), cwd=d)


def test_minisign_rejects_our_signature_over_other_data(
    signed_by_us: tuple[Path, PublicKey, SecretKey],
) -> None:
    """Proves the interop checks above can fail."""
    d, public, _ = signed_by_us
    (d / "f").write_bytes(DATA + b" ")
    proc = run_minisign("-V", "-H", "-P", public.to_text(), "-m", "f", cwd=d, check=False)
    assert proc.returncode != 0
    assert b"Signature verification failed" in proc.stderr


def test_minisign_secret_key_loads_and_signs_for_minisign(
    ms_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub_path, key_path = ms_keys
    secret = SecretKey.load(key_path, None)
    assert secret.public_key == PublicKey.load(pub_path)
    (tmp_path / "f").write_bytes(DATA)
    (tmp_path / "f.minisig").write_text(sign(DATA, secret, trusted_comment="ours"))
    run_minisign("-V", "-H", "-p", pub_path, "-m", "f", cwd=tmp_path)


@pytest.mark.slow
def test_minisign_password_secret_key_loads_and_signs_for_minisign(
    ms_password_keys: tuple[Path, Path, Path], ms_password_secret: SecretKey, tmp_path: Path
) -> None:
    _, pub_path, _ = ms_password_keys
    assert ms_password_secret.public_key == PublicKey.load(pub_path)
    (tmp_path / "f").write_bytes(DATA)
    (tmp_path / "f.minisig").write_text(sign(DATA, ms_password_secret, trusted_comment="ours"))
    run_minisign("-V", "-H", "-p", pub_path, "-m", "f", cwd=tmp_path)


# --- secret keys ---------------------------------------------------------------------------------


def test_light_password_key_we_write_is_usable_by_minisign(tmp_path: Path) -> None:
    public, secret = generate_keypair()
    (tmp_path / "k.key").write_text(secret.to_file_text(b"pw", **LIGHT))
    (tmp_path / "k.pub").write_text(public.to_file_text())
    (tmp_path / "f").write_bytes(DATA)
    run_minisign("-S", "-s", "k.key", "-p", "k.pub", "-m", "f", cwd=tmp_path, stdin=b"pw\n")
    assert verify(DATA, (tmp_path / "f.minisig").read_text(), [public]).key_id == public.key_id
    # minisign checks our BLAKE2b checksum: a wrong password is detected by it, not by luck
    wrong = run_minisign("-S", "-s", "k.key", "-m", "f", cwd=tmp_path, stdin=b"nope\n", check=False)
    assert wrong.returncode != 0
    assert b"Wrong password for that key" in wrong.stderr


def test_secret_key_round_trips_with_and_without_password() -> None:
    _, secret = generate_keypair()
    assert SecretKey.from_text(secret.to_file_text(None), None) == secret
    assert SecretKey.from_text(secret.to_file_text(b"pw", **LIGHT), b"pw") == secret
    assert SecretKey.from_text(secret.to_file_text(b"pw", **LIGHT), b"pw").seed == secret.seed


def test_wrong_or_missing_password_is_a_clear_error() -> None:
    _, secret = generate_keypair()
    text = secret.to_file_text(b"right", **LIGHT)
    with pytest.raises(MinisignKeyError) as info:
        SecretKey.from_text(text, b"wrong")
    assert info.value.reason == "wrong-password"
    assert "wrong password" in str(info.value)
    with pytest.raises(MinisignKeyError) as info:
        SecretKey.from_text(text, None)
    assert info.value.reason == "password-required"


def test_corrupted_unencrypted_secret_key_is_refused() -> None:
    _, secret = generate_keypair()
    lines = secret.to_file_text(None).splitlines()
    damaged = f"{lines[0]}\n{_flip_b64(lines[1], 54 + 8 + 40)}\n"  # inside the public half
    with pytest.raises(MinisignKeyError) as info:
        SecretKey.from_text(damaged, None)
    assert "corrupted" in info.value.what


def test_secret_key_repr_hides_the_seed() -> None:
    _, secret = generate_keypair()
    assert secret.seed.hex() not in repr(secret)
    assert secret.key_id_hex in repr(secret)


@pytest.mark.parametrize(
    ("opslimit", "memlimit", "expected"),
    [
        (33554432, 1073741824, (1 << 20, 8, 1)),  # *_SENSITIVE: what minisign -G writes
        (524288, 16777216, (1 << 14, 8, 1)),  # *_INTERACTIVE
        (32768, 16777216, (1 << 10, 8, 1)),  # CPU-bound branch of pickparams
        (1 << 28, 16777216, (1 << 14, 8, 512)),  # p grows when opslimit exceeds memory
    ],
)
def test_scrypt_parameters_match_libsodium_pickparams(
    opslimit: int, memlimit: int, expected: tuple[int, int, int]
) -> None:
    assert minisign._scrypt_params(opslimit, memlimit) == expected


# --- refusals ------------------------------------------------------------------------------------


@pytest.fixture
def good() -> tuple[PublicKey, SecretKey, str]:
    public, secret = generate_keypair()
    return public, secret, sign(DATA, secret, trusted_comment="timestamp:1700000000")


def test_flipped_byte_in_data_is_bad_signature(good: tuple[PublicKey, SecretKey, str]) -> None:
    public, _, sig = good
    with pytest.raises(VerifyError) as info:
        verify(DATA[:-2] + b"2\n", sig, [public])
    assert info.value.reason == "bad-signature"
    assert "does not match the data" in info.value.what


def test_flipped_byte_in_signature_is_bad_signature(good: tuple[PublicKey, SecretKey, str]) -> None:
    public, _, sig = good
    lines = _sig_lines(sig)
    lines[1] = _flip_b64(lines[1], 30)
    with pytest.raises(VerifyError) as info:
        verify(DATA, "\n".join(lines) + "\n", [public])
    assert info.value.reason == "bad-signature"


@pytest.mark.parametrize("comment", ["timestamp:1800000000", "timestamp:1700000000 ", ""])
def test_altered_trusted_comment_fails_global_signature(
    good: tuple[PublicKey, SecretKey, str], comment: str
) -> None:
    public, _, sig = good
    lines = _sig_lines(sig)
    lines[2] = "trusted comment: " + comment
    with pytest.raises(VerifyError) as info:
        verify(DATA, "\n".join(lines), [public])
    assert info.value.reason == "bad-signature"
    assert "trusted comment" in info.value.what


def test_flipped_global_signature_is_bad_signature(good: tuple[PublicKey, SecretKey, str]) -> None:
    public, _, sig = good
    lines = _sig_lines(sig)
    lines[3] = _flip_b64(lines[3], 0)
    with pytest.raises(VerifyError) as info:
        verify(DATA, "\n".join(lines), [public])
    assert info.value.reason == "bad-signature"


def test_wrong_key_is_unknown_key_and_names_both_ids(
    good: tuple[PublicKey, SecretKey, str],
) -> None:
    public, _, sig = good
    other1, other2 = generate_keypair()[0], generate_keypair()[0]
    with pytest.raises(VerifyError) as info:
        verify(DATA, sig, [other1, other2])
    assert info.value.reason == "unknown-key"
    for key in (public, other1, other2):
        assert key.key_id_hex in info.value.what
    with pytest.raises(VerifyError) as info:
        verify(DATA, sig, [])
    assert info.value.reason == "unknown-key"


def test_key_with_same_id_but_other_key_is_bad_signature(
    good: tuple[PublicKey, SecretKey, str],
) -> None:
    """The key id only selects a key: a forged key id does not help an attacker."""
    public, _, sig = good
    impostor = PublicKey(public.key_id, generate_keypair()[0].key)
    with pytest.raises(VerifyError) as info:
        verify(DATA, sig, [impostor])
    assert info.value.reason == "bad-signature"


def test_any_of_several_trusted_keys_verifies(good: tuple[PublicKey, SecretKey, str]) -> None:
    public, _, sig = good
    assert verify(DATA, sig, [generate_keypair()[0], public]).key_id == public.key_id


@pytest.mark.parametrize("cut", [0, 10, 40, 100, 150, -10, -1])
def test_truncated_signature_is_malformed(good: tuple[PublicKey, SecretKey, str], cut: int) -> None:
    public, _, sig = good
    text = sig.rstrip("\n")[:cut]
    with pytest.raises(VerifyError) as info:
        verify(DATA, text, [public])
    assert info.value.reason == "malformed-signature"


@pytest.mark.parametrize(
    ("line", "replacement"),
    [
        (1, "RUQ!!!notbase64"),
        (1, "RUQ="),
        (3, "AAAA"),
        (0, "comment: missing prefix"),
        (2, "trusted: missing prefix"),
        (1, base64.b64encode(b"EX" + bytes(72)).decode()),
    ],
)
def test_malformed_lines_are_malformed_signature(
    good: tuple[PublicKey, SecretKey, str], line: int, replacement: str
) -> None:
    public, _, sig = good
    lines = _sig_lines(sig)
    lines[line] = replacement
    with pytest.raises(VerifyError) as info:
        verify(DATA, "\n".join(lines), [public])
    assert info.value.reason == "malformed-signature"


def test_extra_line_and_binary_garbage_are_malformed(
    good: tuple[PublicKey, SecretKey, str],
) -> None:
    public, _, sig = good
    for text in (sig + "extra\n", b"\xff\xfe" * 10, b"x" * 20000):
        with pytest.raises(VerifyError) as info:
            verify(DATA, text, [public])
        assert info.value.reason == "malformed-signature"


def test_crlf_signature_file_still_verifies(good: tuple[PublicKey, SecretKey, str]) -> None:
    public, _, sig = good
    assert verify(DATA, sig.replace("\n", "\r\n"), [public]).trusted_comment == (
        "timestamp:1700000000"
    )


def test_signature_text_round_trips(good: tuple[PublicKey, SecretKey, str]) -> None:
    _, _, sig = good
    assert Signature.from_text(sig).to_text() == sig


@pytest.mark.parametrize("comment", ["two\nlines", "cr\rreturn"])
def test_sign_refuses_multiline_comments(comment: str) -> None:
    _, secret = generate_keypair()
    with pytest.raises(ValueError, match="one line"):
        sign(DATA, secret, trusted_comment=comment)
    with pytest.raises(ValueError, match="one line"):
        sign(DATA, secret, trusted_comment="ok", untrusted_comment=comment)


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("timestamp:1700000000\tfile:list.txt\thashed", 1700000000),
        ("file:x\ttimestamp:42", 42),
        ("timestamp:12ab\tfile:x", None),
        ("timestamp:", None),
        ("timestamp:-5", None),
        ("file:timestamp:5", None),
        ("", None),
    ],
)
def test_trusted_comment_timestamp(comment: str, expected: int | None) -> None:
    assert trusted_comment_timestamp(comment) == expected


def test_longest_comments_we_allow_still_verify_with_minisign(tmp_path: Path) -> None:
    public, secret = generate_keypair()
    (tmp_path / "f").write_bytes(DATA)
    trusted = "t" * minisign.TRUSTED_COMMENT_MAX
    untrusted = "u" * minisign.UNTRUSTED_COMMENT_MAX
    (tmp_path / "f.minisig").write_text(
        sign(DATA, secret, trusted_comment=trusted, untrusted_comment=untrusted)
    )
    proc = run_minisign("-V", "-H", "-P", public.to_text(), "-m", "f", cwd=tmp_path)
    assert f"Trusted comment: {trusted}\n".encode() in proc.stdout
    with pytest.raises(ValueError, match="longer"):
        sign(DATA, secret, trusted_comment=trusted + "t")
    with pytest.raises(ValueError, match="longer"):
        sign(DATA, secret, trusted_comment="", untrusted_comment=untrusted + "u")


def test_nul_in_signature_file_is_malformed(good: tuple[PublicKey, SecretKey, str]) -> None:
    public, secret, sig = good
    lines = _sig_lines(sig)
    lines[2] += "\0tail"
    with pytest.raises(VerifyError) as info:
        verify(DATA, "\n".join(lines), [public])
    assert info.value.reason == "malformed-signature"
    with pytest.raises(ValueError, match="NUL"):
        sign(DATA, secret, trusted_comment="a\0b")
