"""allow / deny / unallow / undeny: the hospital's own overrides, audited.

Each edit is a read-modify-write of cli.allow or cli.deny, made under the state directory's
`local.lock`: twenty `allow` commands started at once keep twenty entries.
"""

from __future__ import annotations

import argparse

from agent import overrides
from agent.cli.common import EXIT_FAIL, EXIT_OK, Output, load_config, now_ts, operator
from agent.errors import UsageError
from agent.guards import Policy
from agent.indicators import InvalidValue, normalize
from agent.psl import default as public_suffixes
from agent.state import StateStore

_NEXT = ("takes effect at the next sync: the daemon picks it up within seconds, or run "
         "`blocklist-agent sync`")


def cmd_add(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    try:
        ind = normalize(args.value)
    except InvalidValue as exc:
        raise UsageError(f"{args.value!r}: {exc}") from None
    if args.action == overrides.DENY:
        bad = Policy.from_config(config, psl=public_suffixes()).check_one(ind)
        if bad is not None:
            raise UsageError(f"refusing to deny {args.value}: {bad.detail}",
                             hint="the guard rails protect this value; see guards in the config")
    now = now_ts()
    expires = now + args.duration if args.duration else None
    store = StateStore(config.state_dir)
    with store.local_lock():
        entry = overrides.add(config.local_dir, args.action, args.value, reason=args.reason,
                              author=operator(), expires=expires, now=now)
    store.append_history(
        {"event": args.action, "value": entry.indicator.value, "by": entry.author,
         "reason": args.reason, "expires": entry.expires})
    out.emit({"added": entry.to_dict()},
             lambda: "" if out.quiet else f"{args.action} {entry.indicator.value}: {_NEXT}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    store = StateStore(config.state_dir)
    try:
        with store.local_lock():
            removed, elsewhere = overrides.remove(config.local_dir, args.action, args.value)
    except InvalidValue as exc:
        raise UsageError(f"{args.value!r}: {exc}") from None
    if removed:
        store.append_history(
            {"event": f"un{args.action}", "value": args.value, "by": operator()})
    doc = {"removed": removed, "elsewhere": elsewhere}
    lines = []
    if removed:
        lines.append(f"removed {args.action} {args.value}: {_NEXT}")
    else:
        lines.append(f"{args.value} is not in the command-line {args.action} list")
    lines += [f"  still listed in {w}: edit that file to remove it" for w in elsewhere]
    out.emit(doc, lambda: "\n".join(lines))
    return EXIT_OK if removed else EXIT_FAIL
