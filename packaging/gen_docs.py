#!/usr/bin/python3
"""Write blocklist-agent(8) or the bash completion, generated from the command's own parser.

    python3 packaging/gen_docs.py man > blocklist-agent.8
    python3 packaging/gen_docs.py completion > blocklist-agent

Generated at package build time (debian/rules) so that the manual and the completion can never
disagree with `blocklist-agent --help`: every command, option and help text comes from
agent.cli.build_parser(). The prose around it (what the agent is, the daemon, files, exit
status) is written here, once. The date comes from SOURCE_DATE_EPOCH (reproducible builds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import __version__
from agent.cli import build_parser
from agent.formats import FORMAT_NAMES

COMMON = ("json", "verbose", "quiet", "debug", "config", "help")
FILE_METAVARS = {"FILE", "CONFIG", "PUB", "SECKEY", "PREFIX", "URL-or-PATH"}
DIR_METAVARS = {"DIR"}


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise SystemExit("gen_docs: the parser has no sub-commands")


def own_actions(sub: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and arguments of one command, without the shared ones."""
    return [a for a in sub._actions if a.dest not in COMMON and a.help != argparse.SUPPRESS]


def command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {c.dest: c.help or "" for c in action._choices_actions}
    return {}


# --- the manual page ----------------------------------------------------------------------

def esc(text: str) -> str:
    """Text for troff: backslashes, and a leading '.' or "'" that would read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def option_term(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"\\fI{esc(str(action.metavar or action.dest))}\\fR"
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} \\fI{esc(str(metavar))}\\fR"


def synopsis(name: str, sub: argparse.ArgumentParser) -> str:
    parts = [f"\\fBblocklist\\-agent\\fR [\\fIOPTIONS\\fR] \\fB{esc(name)}\\fR"]
    for action in own_actions(sub):
        if isinstance(action, argparse._HelpAction):
            continue
        term = option_term(action)
        if action.nargs in ("+", "*"):
            term += " ..."
        optional = action.option_strings and not action.required
        parts.append(f"[{term}]" if optional else term)
    return " ".join(parts)


PROSE_DESCRIPTION = r"""
.B blocklist\-agent
runs on network gateways (Debian 12). It fetches signed lists of malicious IP addresses and
domain names published by a CERT or a security team, verifies them (minisign signature,
serial, expiry), parses them, refuses anything dangerous (the whole internet, private ranges,
the site's own names, public suffixes), merges them with local allow and deny overrides, and
enforces the result in the nftables table
.B inet blocklist_agent
and in a DNS RPZ zone.
.PP
The configuration is one YAML file,
.IR /etc/blocklist\-agent/agent.yaml ;
every problem in it is reported at once with its line and key, and unknown keys are errors.
Check it with
.BR "blocklist\-agent check\-config" .
.PP
When a feed is refused, the last good copy stays enforced and the reason is shown by
.BR "blocklist\-agent status" .
A plan that changes more than
.B guards.max_change
of the enforced entries is held until
.BR "blocklist\-agent sync \-\-force" .
"""

PROSE_DAEMON = r"""
.B blocklist\-agent run
is started by
.BR blocklist\-agent.service .
At start\-up it enforces the last good state kept in the state directory (no network needed),
then tells systemd it is ready (\fBType=notify\fR) and refreshes every feed. Each feed is then
refreshed on its own \fBrefresh\fR interval plus a random jitter of up to a tenth of it; a
failed refresh is retried after 30 s, then twice as long each time, up to the feed's interval.
A change of the configuration file or of \fBlocal_dir\fR is acted upon within seconds.
.TP
.B SIGHUP
reloads the configuration (also: \fBsystemctl reload blocklist\-agent\fR). A configuration that
does not load is refused, logged, and the running one is kept.
.TP
.B SIGTERM
lets the step under way finish, starts no new download, and exits 0. Stopping the daemon never
removes the nftables table or the RPZ zone: the gateway stays protected (it fails closed).
.PP
The daemon sends \fBWATCHDOG=1\fR to systemd from its main loop, describes what it is doing in
\fBsystemctl status\fR (\fBSTATUS=\fR), and writes journal entries with the fields
\fBACTION=\fR, \fBFEED=\fR, \fBSERIAL=\fR, \fBRESULT=\fR and \fBREASON=\fR, e.g.
\fBjournalctl \-u blocklist\-agent FEED=cert\-sante\fR.
With \fBmetrics_file\fR set, it writes Prometheus metrics there (node_exporter textfile format,
replaced atomically after every sync and every minute).
.PP
With the nftables firewall, the daemon watches its table in the kernel (a check every half
second, and \fBnft monitor elements\fR): a flushed ruleset, a deleted table, a changed chain or
set, an element deleted or added by hand, an emptied \fBiso_wan\fR are repaired within about a
second (by a full reload, or element by element), each logged with what was found
(\fBACTION=repair\fR, \fBKIND=\fR) and counted in the metric
\fBblocklist_agent_repairs_total{kind=...}\fR. An interface added to \fBiso_wan\fR by hand (as
\fIbreak\-glass.nft\fR does) is a cut, and is kept. \fBSTATUS=\fR and the metrics say what the
kernel holds: a table missing from the kernel is reported as such, whatever was recorded.
.PP
At boot,
.B blocklist\-agent\-boot.service
loads \fI/var/lib/blocklist\-agent/enforced.nft\fR with \fBnft \-f\fR before the network comes
up, so the last enforced blocklist is in place before the daemon (or Python) runs. It is bound
to \fBnftables.service\fR (whose \fI/etc/nftables.conf\fR starts with \fBflush ruleset\fR):
\fBsystemctl restart nftables\fR or \fBreload\fR loads it again right after, so enforcement and
an isolation in force come back even with the daemon stopped.
"""

PROSE_TAIL = r"""
.SH FILES
.TP
.I /etc/blocklist\-agent/agent.yaml
The configuration (a conffile; the installed one uses the example feed only).
.TP
.I /etc/blocklist\-agent/local.d/
Local override files (\fI*.allow\fR, \fI*.deny\fR), written by \fBallow\fR and \fBdeny\fR or by
hand; watched by the daemon.
.TP
.I /var/lib/blocklist\-agent/
The state: the last good copy of every feed, \fIapplied.json\fR, \fIstatus.json\fR, the audit
trail \fIhistory.jsonl\fR and \fIenforced.nft\fR. Removed when the package is purged, except
\fIhistory.jsonl\fR, which a purge keeps unless \fBBLOCKLIST_AGENT_PURGE_HISTORY\fR is set or
the file \fI/var/lib/blocklist\-agent/purge\-history\fR exists.
.PP
Removing the package leaves the agent's nftables table (and an isolation in force) in the
kernel until reboot, on purpose; \fBremove\fR and \fBpurge\fR say so, with the commands that
lift it (\fBblocklist\-agent restore\fR before removal; \fBnft flush set inet blocklist_agent
iso_wan\fR, \fBnft delete table inet blocklist_agent\fR). Installing or upgrading never lifts an
isolation found in the kernel: it is recorded (by "package install") and kept.
.TP
.I /usr/share/blocklist\-agent/example\-feed/
A signed example feed that needs no network.
.SH ENVIRONMENT
.TP
.B BLOCKLIST_AGENT_CONFIG
The configuration file when \fB\-c\fR is not given.
.TP
.BR HTTPS_PROXY ", " NO_PROXY
Proxies for the feed downloads, as usual.
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC
Set by systemd for \fBrun\fR.
.TP
.B BLOCKLIST_AGENT_PURGE_HISTORY
Set (to anything) when purging the package to delete the audit trail \fIhistory.jsonl\fR too,
e.g. \fBBLOCKLIST_AGENT_PURGE_HISTORY=yes apt\-get purge blocklist\-agent\fR.
.SH "EXIT STATUS"
.TP
.B 0
Success.
.TP
.B 1
Failure: a feed refused, a plan held, an apply failed, a degraded \fBstatus\fR.
.TP
.B 2
Usage or configuration error.
.SH "SEE ALSO"
.BR nft (8),
.BR minisign (1),
.BR systemd.service (5),
.BR unbound (8),
.BR journalctl (1)
"""


def manpage() -> str:
    parser = build_parser()
    subs = commands(parser)
    helps = command_help(parser)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    out = [
        f'.TH BLOCKLIST\\-AGENT 8 "{date}" "blocklist\\-agent {__version__}" '
        '"System Administration"',
        ".SH NAME",
        f"blocklist\\-agent \\- {esc(parser.description or '').rstrip('.')}",
        ".SH SYNOPSIS",
        ".B blocklist\\-agent",
        "[\\fB\\-c\\fR \\fICONFIG\\fR] [\\fB\\-\\-json\\fR] [\\fB\\-v\\fR] [\\fB\\-q\\fR] "
        "[\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]",
        ".br",
        ".B blocklist\\-agent \\-\\-version",
        ".SH DESCRIPTION",
        PROSE_DESCRIPTION.strip(),
        ".SH OPTIONS",
        "These options are accepted before or after the command.",
    ]
    for action in parser._actions:
        if action.dest in COMMON or action.dest == "version":
            out += [".TP", option_term(action), esc(action.help or "")]
    out += [".SH COMMANDS"]
    for name, sub in subs.items():
        out += [".SS " + f'"{esc(name)}"', synopsis(name, sub), ".PP", esc(helps.get(name, ""))]
        for action in own_actions(sub):
            if isinstance(action, argparse._HelpAction):
                continue
            out += [".TP", option_term(action), esc(action.help or "")]
    out += [".SH THE DAEMON", PROSE_DAEMON.strip(), PROSE_TAIL.strip()]
    return "\n".join(out) + "\n"


# --- bash completion ----------------------------------------------------------------------

def completion() -> str:
    parser = build_parser()
    subs = commands(parser)
    common = sorted({o for a in parser._actions if a.dest in COMMON for o in a.option_strings})
    files = sorted({o for sub in subs.values() for a in sub._actions
                    if a.metavar in FILE_METAVARS for o in a.option_strings})
    dirs = sorted({o for sub in subs.values() for a in sub._actions
                   if a.metavar in DIR_METAVARS for o in a.option_strings} - set(files))
    valued = sorted({o for sub in subs.values() for a in sub._actions
                     if a.option_strings and a.nargs != 0 and a.dest not in ("help",)
                     for o in a.option_strings} - set(files) - set(dirs) - {"--format"})
    cases = []
    for name, sub in subs.items():
        opts = " ".join(o for a in own_actions(sub) for o in a.option_strings
                        if not isinstance(a, argparse._HelpAction))
        takes_files = any(not a.option_strings and a.metavar in FILE_METAVARS
                          for a in sub._actions)
        kind = "file" if takes_files else ""
        cases.append(f'        {name}) opts="{opts}"; positional={kind} ;;')
    return _COMPLETION.format(
        version=__version__, commands=" ".join(subs), common=" ".join(common),
        files="|".join(files), dirs="|".join(dirs), valued="|".join(valued),
        formats=" ".join(("auto", *FORMAT_NAMES)), cases="\n".join(cases),
    )


_COMPLETION = """\
# bash completion for blocklist-agent {version}; generated from its argument parser
# (packaging/gen_docs.py): do not edit by hand.
_blocklist_agent() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd="" opts="" positional="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            -c|--config) ((i++)) ;;
            -*) ;;
            *) cmd=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    case $prev in
        {files}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        {dirs}) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W "{formats}" -- "$cur")); return ;;
        {valued}) return ;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "{commands} {common} --version" -- "$cur"))
        return
    fi
    case $cmd in
{cases}
    esac
    if [[ $cur == -* || $positional != file ]]; then
        COMPREPLY=($(compgen -W "$opts {common}" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _blocklist_agent blocklist-agent
"""


def main() -> int:
    what = sys.argv[1] if len(sys.argv) == 2 else ""
    if what == "man":
        sys.stdout.write(manpage())
    elif what == "completion":
        sys.stdout.write(completion())
    else:
        print("usage: gen_docs.py man|completion", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
