"""Commands over the pipeline and its state: sync, status, why, check-config."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

from agent import hostinfo, lifelines, overrides, pipeline
from agent.backends.killswitch import isolation_status
from agent.backends.registry import backends_for
from agent.cli.common import EXIT_FAIL, EXIT_OK, Output, load_config
from agent.config import Config
from agent.errors import UsageError
from agent.fetch import HttpFetcher
from agent.guards import Policy
from agent.indicators import InvalidValue
from agent.isolation.resolve import refresh as refresh_allow_names
from agent.isolation.status import isolation_text
from agent.psl import default as default_psl
from agent.state import StateStore
from agent.state.health import repair_lines, state_dir_alarm, state_dir_doc
from agent.util.escape import shown
from agent.util.timefmt import utc_now
from agent.why import explain


def _n(value: int) -> str:
    return f"{value:,}"


def plan_text(result: pipeline.SyncResult) -> str:
    lines = []
    for f in result.to_dict()["feeds"]:
        head = f"feed {f['name']}: {f['status']}"
        if f["serial"] is not None:
            head += f", serial {f['serial']}"
        if f["publisher"]:
            head += f" ({shown(f['publisher'])})"
        head += (f": {_n(f['parsed'])} parsed, {_n(f['accepted'])} accepted, "
                 f"{_n(f['parse_rejects'])} malformed")
        guard = f["guard_rejects"]
        if guard:
            detail = ", ".join(f"{k} {_n(v)}" for k, v in sorted(guard.items()))
            head += f", {_n(sum(guard.values()))} refused by guards ({detail})"
        lines.append(head)
        if f["stale"]:
            lines.append(f"  WARNING: the enforced copy expired at {f['expires']}")
        if f["error"]:
            err = f["error"]
            lines.append(f"  REFUSED ({err['reason']}): {err['message']}")
            if err["hint"]:
                lines.append(f"  what to do: {err['hint']}")
        for sample in f["reject_samples"][:3]:
            lines.append(f"  malformed {sample.get('line') or sample.get('ref')}: "
                         f"{sample['reason']}")
        for sample in f["guard_samples"][:3]:
            lines.append(f"  refused: {sample['detail']}")
    ov = result.overrides
    if ov.allow or ov.deny or ov.rejects:
        lines.append(f"local overrides: {len(ov.allow)} allow, {len(ov.deny)} deny, "
                     f"{len(ov.rejects)} malformed")
        lines += [f"  {r.ref}: {r.reason}" for r in ov.rejects[:5]]
    counts = result.blocklist.counts()
    lines.append("enforced: " + ", ".join(f"{k} {_n(v)}" for k, v in counts.items() if v)
                 if result.blocklist.total else "enforced: nothing")
    plan = result.plan
    if plan.first:
        lines.append(f"plan: first sync, +{_n(plan.added)} entries")
    elif plan.empty:
        lines.append("plan: no change")
    else:
        lines.append(f"plan: +{_n(plan.added)} -{_n(plan.removed)} "
                     f"({plan.ratio:.1%} of {_n(plan.before)} enforced)")
    if plan.held:
        lines.append(f"HELD: {plan.held}")
        if result.deescalated is not None:
            lines.append(f"  applied at once: the removals and allows of the held plan "
                         f"(-{_n(result.deescalated.removed)} entries); only additions wait")
        lines.append("  what to do: check the feed (blocklist-agent status, why), then run "
                     "`blocklist-agent sync --force` if the change is expected")
    lines += result.notes
    lines += [f"{b['name']}: APPLY FAILED ({b['error']['reason']})" for b in result.backends
              if not b["applied"]]
    lines += repair_lines(result.repairs)
    for name, path in result.rendered.items():
        lines.append(f"rendered {name}: {path}")
    if result.error:
        lines.append(f"APPLY FAILED: {result.error}")
    if result.dry_run:
        lines.append("dry run: nothing was changed")
    return shown("\n".join(lines), newlines=True)


def cmd_sync(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    store = StateStore(config.state_dir)
    backends = [] if args.dry_run else backends_for(config)
    own = hostinfo.local_addresses()
    # a dry run touches nothing, not even the state directory (the lock would create it);
    # every state file it reads is replaced atomically, so it needs no lock
    with contextlib.nullcontext() if args.dry_run else store.lock():
        facts = lifelines.gather(config, store, save=not args.dry_run)
        now = utc_now()
        if not args.dry_run:  # the kill switch's names, for an isolation that needs no DNS
            refresh_allow_names(config, store, int(now.timestamp()))
        result = pipeline.run(config, fetcher=HttpFetcher(), store=store,
                              local=overrides.load(config.local_dir, now=int(now.timestamp())),
                              backends=backends, dry_run=args.dry_run, force=args.force,
                              render_to=args.render_to, own_addresses=own, facts=facts,
                              psl=default_psl(), now=now, progress=out.progress)
    if out.json or args.dry_run or out.verbose or not result.ok:
        out.emit(result.to_dict(), lambda: plan_text(result))
    return EXIT_OK if result.ok else EXIT_FAIL


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    store = StateStore(config.state_dir)
    status = store.load_status()
    applied = store.load_applied()
    doc: dict[str, Any] = {
        "feeds": status.get("feeds", {}),
        "last_sync": status.get("last_sync"),
        "enforced": applied[0].counts() if applied else {},
        "applied_at": applied[1].get("applied_at") if applied else None,
        "guard_rejects": status.get("guard_rejects", {}),
        "overrides": status.get("overrides", {}),
    }
    doc["state_dir"] = state_dir_doc(store, status)
    facts = lifelines.kept(config, store)
    doc["lifelines"] = {"protected": [{"value": v, "what": w} for v, w in facts.lifelines],
                        "unresolved": list(facts.unresolved)}
    doc["firewall"] = firewall_status(config, store)
    doc["dns"] = dns_status(config)
    doc["isolation"] = (isolation_status(config, store, int(time.time()))
                        if config.firewall.backend == "nftables" else None)
    configured = {f.name for f in config.feeds}
    for name in configured - set(doc["feeds"]):
        doc["feeds"][name] = {"name": name, "status": "never synced", "error": None}
    healthy = bool(doc["last_sync"]) and doc["last_sync"]["result"] == "ok" and all(
        f.get("error") is None for f in doc["feeds"].values())
    if doc["firewall"] is not None and applied is not None:
        healthy = healthy and bool(doc["firewall"]["in_sync"])
    if doc["dns"] is not None and applied is not None:
        healthy = healthy and doc["dns"]["in_sync"] is not False
    # the kernel is the truth: where it and the intent disagree, status says so first and fails
    doc["kernel_disagrees"] = list((doc["firewall"] or {}).get("disagreements", []))
    healthy = healthy and not doc["kernel_disagrees"] and doc["state_dir"]["problem"] is None
    doc["healthy"] = healthy
    out.emit(doc, lambda: status_text(doc))
    return EXIT_OK if healthy else EXIT_FAIL


def firewall_status(config: Config, store: StateStore) -> dict[str, Any] | None:
    if config.firewall.backend != "nftables":
        return None
    from agent.backends.nftables import NftablesBackend

    return NftablesBackend().status(store, config)


def dns_status(config: Config) -> dict[str, Any] | None:
    if config.dns.backend == "none":
        return None
    from agent.dnsstatus import zone_status

    return zone_status(config)


def dns_text(d: dict[str, Any]) -> list[str]:
    line = (f"dns ({d['backend']}): zone {d['zone']} rendered serial {d['rendered_serial']}, "
            f"served by {d['server']}: {d['served_serial']}")
    if d["in_sync"] is False:
        line += " (BEHIND: the resolver has not loaded the last zone)"
    lines = [line]
    if d.get("error"):
        lines.append(f"  {d['error']}")
    return lines


def status_text(doc: dict[str, Any]) -> str:
    lines = []
    red, reset = ("\033[1;31m", "\033[0m") if sys.stdout.isatty() else ("", "")
    for problem in doc.get("kernel_disagrees", []):
        lines.append(f"{red}KERNEL AND INTENT DISAGREE: {shown(problem)}{reset}")
    if doc.get("kernel_disagrees"):
        lines += ["  what to do: the running daemon repairs this within seconds; otherwise "
                  "run `blocklist-agent sync` (or `nft -f /var/lib/blocklist-agent/enforced.nft`)",
                  ""]
    lines += state_dir_alarm(doc.get("state_dir") or {}, red, reset)
    iso = doc.get("isolation")
    if iso and (iso["active"] or iso["peers"]):  # first, and in red on a terminal
        # (a disagreement of the kill switch is among those said just above)
        lines += [isolation_text({**iso, "disagreement": None}, color=sys.stdout.isatty()), ""]
    # what follows quotes servers and feeds (errors, publishers): escaped, colours come only above
    return "\n".join([*lines, shown("\n".join(_status_lines(doc)), newlines=True)])


def _status_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    last = doc["last_sync"]
    if last:
        lines.append(f"last sync: {last['time']}, {last['result']}"
                     + (" (applied)" if last.get("applied") else " (not applied)"))
        if last.get("plan", {}).get("held"):
            lines.append(f"  HELD: {last['plan']['held']}")
            if last.get("deescalated"):
                lines.append(f"  applied at once: -{last['deescalated']['removed']} entries "
                             "(removals and allows are never held)")
            lines.append("  what to do: check, then `blocklist-agent sync --force`")
        if last.get("error"):
            lines.append(f"  apply failed: {last['error']['message']}")
        for b in last.get("backends") or []:
            lines.append(f"  {b['name']}: " + (b["note"] if b["applied"] else
                                               f"FAILED ({b['error']['reason']}): "
                                               f"{b['error']['message']}"))
    else:
        lines.append("last sync: never (run `blocklist-agent sync`)")
    for name, f in sorted(doc["feeds"].items()):
        line = f"feed {name}: {f.get('status')}"
        if f.get("serial") is not None:
            line += f", serial {f['serial']}, expires {f.get('expires') or 'never'}"
        if f.get("last_success"):
            line += f", last success {f['last_success']}"
        lines.append(line)
        if f.get("stale"):
            lines.append("  WARNING: enforcing an expired copy; the publisher must re-sign")
        err = f.get("error")
        if err:
            lines.append(f"  last error ({err['reason']}): {err['message']}")
            if err.get("hint"):
                lines.append(f"  what to do: {err['hint']}")
        guard = f.get("guard_rejects") or {}
        if guard or f.get("parse_rejects"):
            detail = ", ".join(f"{k} {v}" for k, v in sorted(guard.items()))
            lines.append(f"  rejected: {f.get('parse_rejects', 0)} malformed"
                         + (f", guards: {detail}" if detail else ""))
    lines += repair_lines((doc.get("state_dir") or {}).get("repairs", [])[:3])
    life = doc.get("lifelines") or {}
    if life.get("protected"):
        shown_values = ", ".join(e["value"] for e in life["protected"][:8])
        more = len(life["protected"]) - 8
        lines.append(f"lifelines never blocked: {shown_values}"
                     + (f" and {more} more (status --json)" if more > 0 else ""))
    if life.get("unresolved"):
        lines.append("  not resolved at the last sync (their kept addresses stay protected): "
                     + ", ".join(life["unresolved"]))
    enforced = doc["enforced"]
    lines.append("enforced: " + (", ".join(f"{k} {_n(v)}" for k, v in enforced.items() if v)
                                 or "nothing"))
    fw = doc.get("firewall")
    if fw is not None:
        lines += firewall_text(fw)
    if doc.get("dns") is not None:
        lines += dns_text(doc["dns"])
    return lines


def firewall_text(fw: dict[str, Any]) -> list[str]:
    if fw.get("error"):
        return [f"nftables: cannot read table {fw['table']}: {fw['error']['message']}"]
    if not fw["table_present"]:
        return [f"nftables: table inet {fw['table']} is ABSENT: nothing is blocked",
                "  what to do: run `blocklist-agent sync` (or nft -f enforced.nft)"]
    state = ("as applied" if fw["in_sync"]
             else "ALTERED outside the agent (the next sync repairs it)")
    lines = [f"nftables: table inet {fw['table']} {state}"]
    hits = ", ".join(f"{k} {_n(v)}" for k, v in sorted(fw["counters"].items()) if v)
    lines.append(f"  dropped packets: {hits or 'none yet'}")
    offenders = fw["offenders"]
    if offenders:
        lines.append(f"  {len(offenders)} offender(s), internal hosts that tried a blocked "
                     "destination (likely infected):")
        for o in offenders[:50]:
            extra = f", {o['packets']} packets" if o.get("packets") is not None else ""
            expires = o.get("expires_in")
            extra += f", forgotten in {expires} s" if expires else ""
            lines.append(f"    {o['address']}{extra}")
    return lines


def cmd_why(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    store = StateStore(config.state_dir)
    facts = lifelines.kept(config, store)
    policy = Policy.from_config(config, own_addresses=hostinfo.local_addresses(),
                                lifelines=facts.lifelines, protected_addresses=facts.protected,
                                psl=default_psl())
    try:
        allow_feeds = {f.name for f in config.feeds if f.role == "allow"}
        answer = explain(args.value, store, config.local_dir, policy, allow_feeds)
    except InvalidValue as exc:
        raise UsageError(f"{args.value!r}: {exc}",
                         hint="give an address, a prefix or a domain name") from None
    doc = answer.to_dict()
    if answer.type != "domain":
        if config.firewall.backend == "nftables":
            doc["kernel"] = kernel_check(config, answer.enforced) if answer.blocked else []
            # true only when each element was found in the kernel just now
            doc["enforced_now"] = bool(doc["kernel"]) and all(
                k["present"] is True for k in doc["kernel"])
    elif config.dns.backend == "none":
        if answer.blocked:
            doc["enforced_now"] = False
            doc["not_enforced"] = "no DNS backend is configured (dns.backend: none)"
    elif not answer.value.startswith("*."):
        from agent.dnsstatus import resolver_answer

        doc["resolver"] = resolver_answer(config, answer.value)
        doc["enforced_now"] = doc["resolver"]["blocked"] is True
    out.emit(doc, lambda: why_text(doc))
    return EXIT_OK


def kernel_check(config: Config, enforced: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each set element `why` found in the records, probed in the kernel now (read-only)."""
    if config.firewall.backend != "nftables":
        return []
    from agent.backends.nft_exec import Nft
    from agent.backends.nft_view import KernelView

    view = KernelView(Nft(timeout=10), config.firewall.table)
    return [{"set": e["set"], "entry": e["entry"], "present": view.present(e["set"], e["entry"])}
            for e in enforced]


def why_text(a: dict[str, Any]) -> str:
    if not a["applied"]:
        head = f"{a['value']}: not blocked (nothing has been applied yet)"
    elif a["blocked"]:
        head = f"{a['value']}: BLOCKED"
    else:
        head = f"{a['value']}: not blocked"
    lines = [head]
    if a.get("not_enforced"):
        lines.append(f"  WARNING: listed but NOT enforced: {a['not_enforced']}")
    elif a.get("enforced_now") is False and a["blocked"]:
        lines.append("  WARNING: not enforced right now (the kernel does not hold it, or the "
                     "resolver does not block it)")
    for k in a.get("kernel", []):
        verdict = {True: "present in the kernel now", False: "MISSING from the kernel",
                   None: "cannot be checked in the kernel"}[k["present"]]
        lines.append(f"  {k['entry']} in set {k['set']}: {verdict}")
    resolver = a.get("resolver")
    if resolver:
        verdict = {True: "blocks it", False: "does not block it", None: "cannot tell"}[
            resolver["blocked"]]
        lines.append(f"  resolver {resolver['server']} {verdict} now"
                     + (f": {resolver['detail']}" if resolver.get("detail") else ""))
    for e in a["enforced"]:
        lines.append(f"  enforced by set {e['set']}: {e['entry']}")
    for s in a["sources"]:
        serial = f" serial {s['serial']}" if s.get("serial") is not None else ""
        lines.append(f"  listed by {s['feed']}{serial}: {s['entry']} ({s['ref']})")
    for o in a["allowed_by"]:
        if "feed" in o:  # a `role: allow` feed
            lines.append(f"  allowed by feed {o['feed']}: {o['entry']} ({o['ref']})")
            continue
        lines.append(f"  allowed by {o['where']}: {o['value']} ({o['reason'] or 'no reason'}, "
                     f"by {o['by'] or '?'})")
    for g in a["guard"]:
        lines.append(f"  refused by guard rails ({g['feed']}): {g['detail']}")
    return shown("\n".join(lines), newlines=True)


def cmd_check_config(args: argparse.Namespace, out: Output) -> int:
    config = load_config(args)
    backends_for(config)
    Policy.from_config(config, psl=default_psl())
    warnings = interface_warnings(config)
    if not out.json:
        for warning in warnings:
            out.warn(f"warning: {warning}")
    out.emit({"config": config.path, "valid": True, "feeds": len(config.feeds),
              "warnings": warnings},
             lambda: "" if not out.verbose else f"{config.path}: OK")
    return EXIT_OK


def interface_warnings(config: Config) -> list[str]:
    """Interfaces of the configuration that do not exist now: warned, not refused (ppp links
    come and go), because isolating through a name that does not exist cuts nothing."""
    from agent.isolation.preflight import absent

    fw = config.firewall
    if fw.backend != "nftables":
        return []
    missing, error = absent([*fw.wan_interfaces, *fw.lan_interfaces])
    if error is not None:
        return [f"cannot list this host's interfaces to check the configured ones: {error}"]
    out = []
    for name in missing:
        key = "wan_interfaces" if name in fw.wan_interfaces else "lan_interfaces"
        cut = " (isolate refuses to run while it is missing)" if key == "wan_interfaces" else ""
        out.append(f"firewall.{key}: interface {name} does not exist on this host now{cut}; "
                   "ip -br link lists the interfaces")
    return out
