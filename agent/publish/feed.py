"""Publisher side: write a signed feed directory, sign single files, create key pairs.

The output is a directory any web server can serve (docs/design.md §2). Every file is written
atomically, payloads first, then manifest.json, then its signature, so a server never serves a
half-written file. Between those renames a client can still see the new manifest with the old
signature (or new payloads under the old manifest): it then refuses that fetch with bad-signature or
payload-hash and retries, keeping its last good feed, which is the behaviour the rules want.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.errors import AgentError, UsageError
from agent.publish.minisign import (
    MEMLIMIT_SENSITIVE,
    OPSLIMIT_SENSITIVE,
    SecretKey,
    generate_keypair,
    sign,
)
from agent.util.fsutil import atomic_write
from agent.util.timefmt import iso_z, utc_now
from agent.verify import (
    FORMAT,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    parse_manifest,
    payload_path_error,
)
from agent.verify.minisign import verify


def _utc(now: datetime | None) -> datetime:
    when = utc_now() if now is None else now
    if when.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return when.astimezone(UTC).replace(microsecond=0)


def _existing_serial(out_dir: Path) -> int | None:
    path = out_dir / MANIFEST_NAME
    try:
        serial = json.loads(path.read_bytes())["serial"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AgentError(
            f"cannot read the serial of the existing manifest: {exc}",
            where=str(path),
            hint="fix or remove it, or pass an explicit serial above the last one published",
            reason="publish",
        ) from exc
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise AgentError(
            f"the existing manifest has a non-integer serial {serial!r}",
            where=str(path),
            hint="pass an explicit serial above the last one published",
            reason="publish",
        )
    return serial


def _next_serial(out_dir: Path, serial: int | None) -> int:
    if serial is not None and serial < 0:
        raise UsageError(f"serial must be >= 0, got {serial}")
    try:
        existing = _existing_serial(out_dir)
    except AgentError:
        if serial is None:
            raise
        return serial  # the operator chose a serial; an unreadable old manifest cannot gainsay it
    if existing is None:
        return 1 if serial is None else serial
    if serial is None:
        return existing + 1
    if serial <= existing:
        raise UsageError(
            f"serial {serial} is not above the serial {existing} already published in "
            f"{out_dir / MANIFEST_NAME}",
            hint=f"clients refuse a lower serial as a rollback and the same serial with other "
            f"content as a replay; use {existing + 1} or more (or omit the serial)",
        )
    return serial


def _payload_entries(
    files: Sequence[Path], formats: Mapping[str, str]
) -> list[tuple[Path, str, str]]:
    entries: list[tuple[Path, str, str]] = []
    names: set[str] = set()
    for file in files:
        name = Path(file).name
        problem = payload_path_error(name)
        if problem:
            raise UsageError(f"payload file name {name!r} {problem}", where=str(file))
        if name in names:
            raise UsageError(f"two payload files are named {name!r}", where=str(file))
        names.add(name)
        entries.append((Path(file), name, formats.get(name, "auto")))
    unused = sorted(set(formats) - names)
    if unused:
        raise UsageError(f"formats given for files that are not published: {unused}")
    return entries


def publish(
    files: Sequence[Path],
    *,
    out_dir: Path,
    key: SecretKey,
    publisher: str,
    serial: int | None = None,
    expires: timedelta = timedelta(days=7),
    formats: Mapping[str, str] | None = None,
    now: datetime | None = None,
    feed: str | None = None,
) -> Manifest:
    """Copy `files` into `out_dir` and write a signed manifest.json for them.

    The serial defaults to the published one + 1 (1 for a new feed); an explicit serial must be
    above the published one. Payloads are named by their base name; `formats` maps a base name to
    its format (default "auto"). `feed` names the feed in the manifest: subscribers configured
    with another name refuse it, so a key signing several feeds cannot have one served for another.
    """
    if not files:
        raise UsageError("nothing to publish: give at least one payload file")
    if expires <= timedelta(0):
        raise UsageError(f"expires must be positive, got {expires}")
    issued = _utc(now)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = _payload_entries(files, formats or {})
    number = _next_serial(out_dir, serial)
    payloads = []
    for source, name, fmt in entries:
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read payload file: {exc}", where=str(source)) from exc
        target = out_dir / name
        if not (target.exists() and target.samefile(source)):
            atomic_write(target, data)
        payloads.append(
            {
                "path": name,
                "format": fmt,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        )
    document = {
        "format": FORMAT,
        "publisher": publisher,
        "serial": number,
        "issued": iso_z(issued),
        "expires": iso_z(issued + expires),
        "payloads": payloads,
    }
    if feed is not None:
        document["feed"] = feed
    text = json.dumps(document, sort_keys=True, ensure_ascii=False) + "\n"
    manifest_bytes = text.encode("utf-8")
    manifest = parse_manifest(manifest_bytes, key_id=key.key_id_hex)  # never publish a bad one
    comment = f"timestamp:{int(issued.timestamp())}\tfile:{MANIFEST_NAME}\thashed\tserial:{number}"
    sig_text = sign(manifest_bytes, key, trusted_comment=comment)
    verify(manifest_bytes, sig_text, [key.public_key])
    atomic_write(out_dir / MANIFEST_NAME, manifest_bytes)
    atomic_write(out_dir / SIGNATURE_NAME, sig_text.encode("utf-8"))
    return manifest


def sign_file(path: Path, key: SecretKey, *, now: datetime | None = None,
              feed: str | None = None) -> Path:
    """Write `path`.minisig for a simple signed single list. Its trusted comment carries the
    timestamp that clients compare for rollback, as minisign's default comment does, and with
    `feed` the name of the feed it is for (`feed:NAME`, checked like a manifest's `feed`)."""
    path = Path(path)
    when = _utc(now)
    comment = f"timestamp:{int(when.timestamp())}\tfile:{path.name}\thashed"
    if feed is not None:
        comment += f"\tfeed:{feed}"
    sig_path = path.with_name(path.name + ".minisig")
    atomic_write(sig_path, sign(path.read_bytes(), key, trusted_comment=comment).encode())
    return sig_path


def write_keypair(
    prefix: Path,
    password: bytes | None,
    *,
    opslimit: int = OPSLIMIT_SENSITIVE,
    memlimit: int = MEMLIMIT_SENSITIVE,
) -> tuple[Path, Path]:
    """Create PREFIX.pub and PREFIX.key (mode 0600), in minisign's formats; never overwrite.

    The scrypt cost defaults to minisign's (1 GiB, a few seconds); lower it only for tests.
    """
    prefix = Path(prefix)
    pub_path = prefix.with_name(prefix.name + ".pub")
    key_path = prefix.with_name(prefix.name + ".key")
    for path in (pub_path, key_path):
        if path.exists():
            raise UsageError(
                f"{path} already exists; refusing to overwrite a key",
                hint="choose another prefix, or move the old key pair away first",
            )
    if not prefix.parent.is_dir():
        raise UsageError(
            f"cannot write the key pair {prefix}: the directory {prefix.parent} does not exist",
            hint=f"create it first (mkdir -p {prefix.parent}) or give --out a prefix in an "
            "existing directory",
        )
    public, secret = generate_keypair()
    key_text = secret.to_file_text(password, opslimit=opslimit, memlimit=memlimit)
    for path, data, mode in (
        (key_path, key_text.encode("ascii"), 0o600),
        (pub_path, public.to_file_text().encode("ascii"), 0o644),
    ):
        try:
            atomic_write(path, data, mode, exclusive=True)
        except FileExistsError as exc:
            raise UsageError(f"{path} appeared meanwhile; refusing to overwrite a key") from exc
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}",
                             hint="check the directory's permissions and free space") from None
    return pub_path, key_path
