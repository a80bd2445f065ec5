"""Publisher and inspection commands: verify, parse, keygen, publish. They need no state."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent import formats, publish
from agent.cli.common import EXIT_OK, Output
from agent.config import load as load_config
from agent.errors import AgentError, ConfigError, UsageError
from agent.fetch import HttpFetcher, join_url, signature_url
from agent.indicators import ParseResult
from agent.publish import SecretKey
from agent.verify import MANIFEST_NAME, check_manifest, check_payload, minisign, parse_manifest


def _as_url(target: str) -> str:
    if "://" in target:
        return target
    path = Path(target).resolve()
    if path.is_dir():
        path = path / MANIFEST_NAME
    return path.as_uri()


def _keys(args: argparse.Namespace) -> list[minisign.PublicKey]:
    texts: list[str] = list(args.key)
    if not texts:
        try:
            cfg = load_config(args.config)
        except ConfigError:
            cfg = None
        if cfg is not None:
            texts = [k for f in cfg.feeds for k in f.trusted_keys]
    if not texts:
        raise UsageError("no trusted key: give --key PUB (base64 key or .pub file)",
                         hint="the publisher's public key is the RW... line of its .pub file")
    return [minisign.load_public_key(text) for text in texts]


def _counts(parsed: ParseResult) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for ind in parsed.indicators:
        counts[ind.type + ("_prefix" if ind.is_prefix else "")] += 1
    counts["rejects"] = len(parsed.rejects)
    return dict(counts)


def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    url = _as_url(args.target)
    fetcher = HttpFetcher()
    keys = _keys(args)
    body = fetcher.get(url, max_size=256 * 1024 * 1024, timeout=60, ca_file=args.ca_file)
    sig_text = fetcher.get(signature_url(body.url), max_size=16384, timeout=60,
                           ca_file=args.ca_file).data
    sig = minisign.verify(body.data, sig_text, keys)
    summary: dict[str, Any] = {"url": body.url, "key_id": sig.key_id_hex, "valid": True}
    if _looks_like_manifest(body.data):
        manifest = parse_manifest(body.data, key_id=sig.key_id_hex)
        summary.update(kind="manifest", publisher=manifest.publisher, serial=manifest.serial,
                       issued=manifest.issued.isoformat(), expires=manifest.expires.isoformat(),
                       payloads=[])
        check_manifest(manifest, now=datetime.now(UTC), last=None)
        for p in manifest.payloads:
            data = fetcher.get(join_url(body.url, p.path), max_size=p.size, timeout=60,
                               ca_file=args.ca_file).data
            check_payload(p, data)
            parsed = formats.parse(data, p.format)
            summary["payloads"].append({"path": p.path, "format": p.format, "size": p.size,
                                        "sha256": p.sha256, "counts": _counts(parsed)})
    else:
        parsed = formats.parse(body.data, "auto")
        summary.update(kind="signed-list", timestamp=sig.timestamp, size=len(body.data),
                       trusted_comment=sig.trusted_comment, counts=_counts(parsed))
    out.emit(summary, lambda: _verify_text(summary))
    return EXIT_OK


def _looks_like_manifest(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "payloads" in doc


def _verify_text(s: dict[str, Any]) -> str:
    lines = [f"OK: signature by key {s['key_id']} ({s['url']})"]
    if s["kind"] == "manifest":
        lines += [f"publisher: {s['publisher']}", f"serial:    {s['serial']}",
                  f"issued:    {s['issued']}", f"expires:   {s['expires']}"]
        for p in s["payloads"]:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(p["counts"].items()))
            lines.append(f"payload:   {p['path']} ({p['format']}, {p['size']} bytes): {counts}")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items()))
        lines += [f"signed list, timestamp {s['timestamp']}, {s['size']} bytes: {counts}"]
    return "\n".join(lines)


def cmd_parse(args: argparse.Namespace, out: Output) -> int:
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    fmt = formats.sniff(data) if args.format == "auto" else args.format
    parsed = formats.parse(data, fmt)
    doc = {"format": fmt, "indicators": [i.to_dict() for i in parsed.indicators],
           "rejects": [r.to_dict() for r in parsed.rejects]}
    if out.json:
        out.emit(doc, lambda: "")
    else:
        write = sys.stdout.write
        for ind in parsed.indicators:
            notes = [note for note in ("below only" if ind.below else "", ind.action) if note]
            write(f"{ind.type}\t{ind.shown}{' (' + ', '.join(notes) + ')' if notes else ''}\n")
        for rej in parsed.rejects:
            print(f"{args.file}:{rej.ref}: {rej.reason}", file=sys.stderr)
        if not out.quiet:
            print(f"{len(parsed.indicators)} indicators, {len(parsed.rejects)} rejected "
                  f"(format {fmt})", file=sys.stderr)
    return EXIT_OK


def _password(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read the password file: {exc.strerror}", where=path) from None


def cmd_keygen(args: argparse.Namespace, out: Output) -> int:
    password = _password(args.password_file)
    pub_path, key_path = publish.write_keypair(Path(args.out), password)
    pub = minisign.PublicKey.load(pub_path)
    doc = {"public_key": pub.to_text(), "key_id": pub.key_id_hex, "pub": str(pub_path),
           "key": str(key_path), "encrypted": password is not None}
    out.emit(doc, lambda: (
        f"public key ({pub.key_id_hex}), give this line to subscribers:\n{pub.to_text()}\n"
        f"secret key: {key_path} (mode 0600{'' if password else ', NOT encrypted'}); "
        "keep it off the gateways"))
    return EXIT_OK


def _load_secret(path: str, password_file: str | None) -> SecretKey:
    password = _password(password_file)
    try:
        return SecretKey.load(path, password)
    except AgentError as exc:
        if password is not None or not sys.stdin.isatty() or "password" not in str(exc):
            raise
    return SecretKey.load(path, getpass.getpass("secret key password: ").encode())


def cmd_publish(args: argparse.Namespace, out: Output) -> int:
    key = _load_secret(args.key, args.password_file)
    files = [Path(f) for f in args.files]
    fmts = {f.name: args.format for f in files}
    publisher = args.publisher or f"blocklist-agent publisher {key.key_id_hex}"
    manifest = publish.publish(files, out_dir=args.out, key=key, publisher=publisher,
                               serial=args.serial, expires=timedelta(seconds=args.expires),
                               formats=fmts, feed=args.feed)
    doc = {"out": str(args.out), "serial": manifest.serial, "expires": manifest.expires.isoformat(),
           "payloads": [p.path for p in manifest.payloads], "key_id": manifest.key_id}
    out.emit(doc, lambda: "" if not out.verbose else
             f"published serial {manifest.serial} in {args.out}, expires {manifest.expires}")
    return EXIT_OK
