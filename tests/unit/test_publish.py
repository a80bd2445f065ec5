"""agent.publish and agent.util.fsutil: signed feed directories, single-file signatures, keys."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.errors import AgentError, UsageError
from agent.publish import minisign, publish, sign_file, write_keypair
from agent.publish.minisign import SecretKey, generate_keypair
from agent.util.fsutil import atomic_write
from agent.verify import LastAccepted, check_payload, verify_manifest
from agent.verify.minisign import PublicKey, verify

MINISIGN = "/usr/bin/minisign"
NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
LIGHT = {"opslimit": minisign.OPSLIMIT_MIN, "memlimit": minisign.MEMLIMIT_MIN}


def run_minisign(*args: str | Path, cwd: Path, stdin: bytes = b"") -> str:
    proc = subprocess.run(
        [MINISIGN, *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={"HOME": str(cwd)},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout.decode()


@pytest.fixture
def keys() -> tuple[PublicKey, SecretKey]:
    return generate_keypair()


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "indicators.txt").write_bytes(b"192.0.2.1\nevil.example\n")
    (src / "drop.json").write_bytes(b'{"cidr": "198.51.100.0/24"}\n')
    return [src / "indicators.txt", src / "drop.json"]


def test_published_feed_verifies_and_payloads_match(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey], sources: list[Path]
) -> None:
    public, secret = keys
    out = tmp_path / "feed"
    m = publish(
        sources,
        out_dir=out,
        key=secret,
        publisher="CERT Santé",
        now=NOW,
        formats={"drop.json": "spamhaus-json"},
    )
    data = (out / "manifest.json").read_bytes()
    again = verify_manifest(
        data,
        (out / "manifest.json.minisig").read_bytes(),
        [public],
        now=NOW + timedelta(hours=1),
        last=None,
    )
    assert again == m
    assert (m.serial, m.publisher, m.key_id) == (1, "CERT Santé", public.key_id_hex)
    assert (m.issued, m.expires) == (NOW, NOW + timedelta(days=7))
    assert [(p.path, p.format) for p in m.payloads] == [
        ("indicators.txt", "auto"),
        ("drop.json", "spamhaus-json"),
    ]
    for p, src in zip(m.payloads, sources, strict=True):
        assert (out / p.path).read_bytes() == src.read_bytes()
        check_payload(p, (out / p.path).read_bytes())
    # one JSON object with sorted keys, UTF-8, newline-terminated
    text = data.decode()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert "CERT Santé" in text
    assert sorted(os.listdir(out)) == sorted(
        ["manifest.json", "manifest.json.minisig", "indicators.txt", "drop.json"]
    )


def test_published_manifest_verifies_with_real_minisign(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey], sources: list[Path]
) -> None:
    public, secret = keys
    out = tmp_path / "feed"
    publish(sources, out_dir=out, key=secret, publisher="p", serial=9, now=NOW)
    stdout = run_minisign("-V", "-H", "-P", public.to_text(), "-m", "manifest.json", cwd=out)
    stamp = int(NOW.timestamp())
    assert f"Trusted comment: timestamp:{stamp}\tfile:manifest.json\thashed\tserial:9" in stdout


def test_serial_defaults_to_existing_plus_one(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey], sources: list[Path]
) -> None:
    public, secret = keys
    out = tmp_path / "feed"
    first = publish(sources, out_dir=out, key=secret, publisher="p", now=NOW)
    second = publish(sources, out_dir=out, key=secret, publisher="p", now=NOW)
    assert (first.serial, second.serial) == (1, 2)
    # a client that accepted the first accepts the second
    verify_manifest(
        (out / "manifest.json").read_bytes(),
        (out / "manifest.json.minisig").read_bytes(),
        [public],
        now=NOW,
        last=LastAccepted(first.serial, first.sha256),
    )


@pytest.mark.parametrize("serial", [5, 4])
def test_explicit_serial_not_above_existing_is_refused(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey], sources: list[Path], serial: int
) -> None:
    _, secret = keys
    out = tmp_path / "feed"
    publish(sources, out_dir=out, key=secret, publisher="p", serial=5, now=NOW)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(UsageError) as info:
        publish(sources, out_dir=out, key=secret, publisher="p", serial=serial, now=NOW)
    assert "serial 5 already published" in info.value.what
    assert "6" in info.value.hint
    assert (out / "manifest.json").read_bytes() == before
    assert publish(sources, out_dir=out, key=secret, publisher="p", serial=6, now=NOW).serial == 6


def test_unreadable_existing_manifest_needs_an_explicit_serial(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey], sources: list[Path]
) -> None:
    _, secret = keys
    out = tmp_path / "feed"
    out.mkdir()
    (out / "manifest.json").write_text("{broken")
    with pytest.raises(AgentError, match="serial of the existing manifest"):
        publish(sources, out_dir=out, key=secret, publisher="p", now=NOW)
    assert publish(sources, out_dir=out, key=secret, publisher="p", serial=3, now=NOW).serial == 3


def test_republishing_files_already_in_out_dir(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey]
) -> None:
    _, secret = keys
    out = tmp_path / "feed"
    out.mkdir()
    (out / "list.txt").write_bytes(b"192.0.2.7\n")
    m = publish([out / "list.txt"], out_dir=out, key=secret, publisher="p", now=NOW)
    assert (out / "list.txt").read_bytes() == b"192.0.2.7\n"
    check_payload(m.payloads[0], b"192.0.2.7\n")


@pytest.mark.parametrize(
    ("names", "formats", "needle"),
    [
        (["a/list.txt", "b/list.txt"], None, "two payload files"),
        (["manifest.json"], None, "reserved"),
        (["list.txt"], {"other.txt": "plain"}, "other.txt"),
        ([], None, "nothing to publish"),
    ],
)
def test_bad_payload_selection_is_refused(
    tmp_path: Path,
    keys: tuple[PublicKey, SecretKey],
    names: list[str],
    formats: dict[str, str] | None,
    needle: str,
) -> None:
    files = []
    for name in names:
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("192.0.2.1\n")
        files.append(path)
    with pytest.raises(UsageError, match=needle):
        publish(
            files, out_dir=tmp_path / "feed", key=keys[1], publisher="p", formats=formats, now=NOW
        )
    assert not (tmp_path / "feed" / "manifest.json").exists()


def test_expires_and_now_are_validated(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey], sources: list[Path]
) -> None:
    with pytest.raises(UsageError, match="expires"):
        publish(sources, out_dir=tmp_path, key=keys[1], publisher="p", expires=timedelta(0))
    with pytest.raises(ValueError, match="aware"):
        publish(sources, out_dir=tmp_path, key=keys[1], publisher="p", now=datetime(2026, 1, 1))
    m = publish(
        sources,
        out_dir=tmp_path / "f",
        key=keys[1],
        publisher="p",
        expires=timedelta(hours=6),
        now=NOW,
    )
    assert m.expires - m.issued == timedelta(hours=6)


# --- single signed files -------------------------------------------------------------------------


def test_sign_file_is_verifiable_by_minisign_and_in_process(
    tmp_path: Path, keys: tuple[PublicKey, SecretKey]
) -> None:
    public, secret = keys
    path = tmp_path / "list.txt"
    path.write_bytes(b"evil.example\n")
    sig_path = sign_file(path, secret, now=NOW)
    assert sig_path == tmp_path / "list.txt.minisig"
    sig = verify(path.read_bytes(), sig_path.read_text(), [public])
    assert sig.timestamp == int(NOW.timestamp())
    assert sig.trusted_comment == f"timestamp:{int(NOW.timestamp())}\tfile:list.txt\thashed"
    run_minisign("-V", "-H", "-P", public.to_text(), "-m", "list.txt", cwd=tmp_path)


# --- key pairs -----------------------------------------------------------------------------------


def test_write_keypair_unencrypted_is_usable_by_minisign(tmp_path: Path) -> None:
    pub_path, key_path = write_keypair(tmp_path / "feed", None)
    assert (pub_path, key_path) == (tmp_path / "feed.pub", tmp_path / "feed.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    public = PublicKey.load(pub_path)
    assert SecretKey.load(key_path, None).public_key == public
    (tmp_path / "f").write_bytes(b"data\n")
    run_minisign("-S", "-s", key_path, "-m", "f", cwd=tmp_path)
    assert verify(b"data\n", (tmp_path / "f.minisig").read_text(), [public]).key_id == (
        public.key_id
    )
    run_minisign("-V", "-H", "-p", pub_path, "-m", "f", cwd=tmp_path)


def test_write_keypair_with_password_is_usable_by_minisign(tmp_path: Path) -> None:
    pub_path, key_path = write_keypair(tmp_path / "feed", b"correct horse", **LIGHT)
    (tmp_path / "f").write_bytes(b"data\n")
    run_minisign("-S", "-s", key_path, "-m", "f", cwd=tmp_path, stdin=b"correct horse\n")
    run_minisign("-V", "-H", "-p", pub_path, "-m", "f", cwd=tmp_path)
    assert SecretKey.load(key_path, b"correct horse").public_key == PublicKey.load(pub_path)


@pytest.mark.slow
def test_write_keypair_with_minisign_default_scrypt_cost(tmp_path: Path) -> None:
    """The default (1 GiB, N=2^20) is what `minisign -G` writes; minisign must accept it."""
    pub_path, key_path = write_keypair(tmp_path / "feed", b"pw")
    raw = base64.b64decode(key_path.read_text().splitlines()[1])
    assert raw[2:4] == b"Sc"
    assert int.from_bytes(raw[38:46], "little") == minisign.OPSLIMIT_SENSITIVE
    assert int.from_bytes(raw[46:54], "little") == minisign.MEMLIMIT_SENSITIVE
    (tmp_path / "f").write_bytes(b"data\n")
    run_minisign("-S", "-s", key_path, "-m", "f", cwd=tmp_path, stdin=b"pw\n")
    run_minisign("-V", "-H", "-p", pub_path, "-m", "f", cwd=tmp_path)


@pytest.mark.parametrize("existing", ["feed.pub", "feed.key"])
def test_write_keypair_never_overwrites(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious\n")
    with pytest.raises(UsageError, match="already exists"):
        write_keypair(tmp_path / "feed", None)
    assert (tmp_path / existing).read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == [existing]


# --- atomic_write --------------------------------------------------------------------------------


def test_atomic_write_replaces_with_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"old")
    atomic_write(path, b"new", 0o640)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["x"]


def test_atomic_write_exclusive_refuses_existing(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        atomic_write(path, b"new", exclusive=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x"]
    atomic_write(tmp_path / "y", b"fresh", 0o600, exclusive=True)
    assert stat.S_IMODE((tmp_path / "y").stat().st_mode) == 0o600
