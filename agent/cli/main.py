"""The command line (design section 11, a v1 contract: names, flags, exit codes, --json keys).

Exit codes: 0 success; 1 failure (a feed refused, a plan held, an apply failed, a degraded
`status`); 2 usage or configuration error. Errors go to stderr as the operator-facing message
of an AgentError; the traceback only with --debug. Quiet on success unless -v or the command's
purpose is to print something.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent import __version__
from agent import config as config_mod
from agent.cli.common import Output, duration_arg, feed_name_arg
from agent.errors import AgentError
from agent.util.escape import protect_handlers

EPILOG = """exit codes: 0 success, 1 failure (feed refused, plan held, apply failed),
2 usage or configuration error. See blocklist-agent(8)."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document (for scripts)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="say what is being done")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only errors")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="CONFIG",
                        help=f"configuration file (default {config_mod.DEFAULT_CONFIG_PATH})")

    parser = argparse.ArgumentParser(
        prog="blocklist-agent", parents=[common], epilog=EPILOG,
        description="Signed blocklists enforced in nftables and DNS RPZ, and the kill switch.",
    )
    parser.add_argument("--version", action="version", version=f"blocklist-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, func: str) -> argparse.ArgumentParser:
        """`func` is "module:function" under agent.commands, imported only when run, so that
        `isolate` at 3 a.m. does not wait for requests and cryptography to load."""
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text,
                           epilog=EPILOG)
        p.set_defaults(func=func)
        return p

    p = command("sync", "one full pass: fetch, verify, merge, plan, apply, record", "sync:cmd_sync")
    p.add_argument("--dry-run", action="store_true",
                   help="change nothing (kernel, resolver, state); print the plan")
    p.add_argument("--render-to", type=Path, metavar="DIR",
                   help="also write DIR/ruleset.nft and DIR/rpz.zone")
    p.add_argument("--force", action="store_true",
                   help="apply a plan held by guards.max_change (after checking it)")

    p = command("verify", "check a feed's signature and manifest, print its summary",
                "feeds:cmd_verify")
    p.add_argument("target", metavar="URL-or-PATH",
                   help="manifest.json (or a signed single list) as URL, path or directory")
    p.add_argument("--key", action="append", default=[], metavar="PUB",
                   help="trusted public key: base64 line or .pub file (repeatable; default: "
                        "the keys of the configured feeds)")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for https")

    p = command("parse", "print the normalized indicators of one file", "feeds:cmd_parse")
    p.add_argument("file", metavar="FILE", help="the file ('-' for standard input)")
    p.add_argument("--format", default="auto", metavar="F",
                   help="auto (default), plain, hosts, spamhaus-drop, spamhaus-json, feodo-csv, "
                        "threatfox-csv, urlhaus-csv, misp-csv, misp-json, stix2, rpz")

    command("status", "feeds, enforced counts, overrides, last sync; exit 1 if degraded",
            "sync:cmd_status")

    p = command("why", "is this address or name blocked, by what, or allowed, by what",
                "sync:cmd_why")
    p.add_argument("value", metavar="VALUE")

    for name, help_text in (("allow", "never block VALUE (wins over every feed)"),
                            ("deny", "block VALUE locally (guard rails still apply)")):
        p = command(name, help_text, "local:cmd_add")
        p.add_argument("value", metavar="VALUE",
                       help="address, prefix, name, or *.name for a name and its subdomains")
        p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        p.add_argument("--for", dest="duration", type=duration_arg, metavar="D",
                       help="expire after D (30m, 2h, 7d)")
        p.set_defaults(action=name)
    p = command("unallow", "remove a local allow entry", "local:cmd_remove")
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(action="allow")
    p = command("undeny", "remove a local deny entry", "local:cmd_remove")
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(action="deny")

    p = command("keygen", "make a minisign-compatible key pair for a feed publisher",
                "feeds:cmd_keygen")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="writes PREFIX.pub and PREFIX.key")
    p.add_argument("--password-file", metavar="FILE",
                   help="encrypt the secret key with the password in FILE (default: unencrypted, "
                        "mode 0600, like minisign -W)")

    p = command("publish", "build and sign a feed directory", "feeds:cmd_publish")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--key", required=True, metavar="SECKEY", help="minisign secret key file")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--serial", type=int, metavar="N",
                   help="default: the serial in DIR/manifest.json + 1, or 1")
    p.add_argument("--expires", type=duration_arg, default=7 * 86400, metavar="D",
                   help="validity from now (default 7d)")
    p.add_argument("--publisher", default="",
                   help="publisher name shown to subscribers (default: from the key id)")
    p.add_argument("--format", default="auto", metavar="F",
                   help="payload format recorded in the manifest (default auto)")
    p.add_argument("--feed", type=feed_name_arg, metavar="NAME",
                   help="the feed's name, written into the manifest: subscribers whose feed has "
                        "another name refuse it (protects feeds signed by one key from each other)")
    p.add_argument("--password-file", metavar="FILE",
                   help="password of an encrypted secret key")

    command("check-config", "validate the configuration file; exit 2 if it is wrong",
            "sync:cmd_check_config")

    p = command("isolate", "KILL SWITCH: cut internet (WAN) traffic, keep LAN, management and "
                "essential services", "isolation:cmd_isolate")
    p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    p.add_argument("--for", dest="duration", type=duration_arg, metavar="D",
                   help="lift automatically after D (30m, 2h), even if the daemon is down")
    p.add_argument("--peer", action="append", metavar="NAME",
                   help="quarantine only this partner network of isolation.peers (repeatable)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be cut and what stays open; change nothing")
    p.add_argument("--force", action="store_true",
                   help="isolate even if a WAN interface is missing or a default route leaves "
                        "through another interface (the cut may then not hold)")
    p = command("restore", "lift isolation (or one peer quarantine)", "isolation:cmd_restore")
    p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    p.add_argument("--peer", action="append", metavar="NAME",
                   help="lift only this peer's quarantine (repeatable)")

    command("run", "the daemon: refresh the feeds on schedule and keep them enforced "
            "(systemd Type=notify; SIGHUP reloads, SIGTERM stops, enforcement stays)",
            "daemon:cmd_run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # the shared options may stand before or after the command; fill in what was not given
    # (argparse shares option objects between parents, so defaults cannot live on them)
    defaults = {"json": False, "verbose": False, "quiet": False, "debug": False,
                "config": os.environ.get("BLOCKLIST_AGENT_CONFIG",
                                         config_mod.DEFAULT_CONFIG_PATH)}
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.CRITICAL
    logging.basicConfig(level=level, format="blocklist-agent: %(levelname)s: %(message)s")
    protect_handlers(logging.getLogger())
    out = Output(args.json, args.verbose, args.quiet)
    try:
        module, _, name = args.func.partition(":")
        func: Callable[[argparse.Namespace, Output], int] = getattr(
            importlib.import_module(f"agent.cli.commands.{module}"), name)
        return func(args, out)
    except AgentError as exc:
        if args.debug:
            raise
        if out.json:
            print(json.dumps({"error": exc.to_dict()}, indent=2))
        print(f"blocklist-agent: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("blocklist-agent: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a full disk, or a bug: a message, the traceback to the log
        if args.debug:
            raise
        logging.getLogger("agent").error("unexpected error", exc_info=exc)
        if isinstance(exc, OSError):
            what = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
            message = f"cannot complete the command: {what}"
        else:
            message = (f"unexpected error: {type(exc).__name__}: {str(exc)[:200]} (a bug; "
                       "run with --debug for the traceback and report it)")
        if out.json:
            print(json.dumps({"error": {"reason": "internal", "message": message}}, indent=2))
        print(f"blocklist-agent: {message}", file=sys.stderr)
        return 1

