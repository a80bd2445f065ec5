"""The Debian package and the systemd units.

The slow test does what a sysadmin does: build the .deb (`scripts/build-deb.sh`, the recipe of
`make deb`, with lintian failing on errors), install it with apt into a fresh Debian 12 tree
(debootstrap, so apt resolves every dependency from Debian itself), run the command there, then
remove and purge it. The debootstrap tree is cached as a tarball under CACHE, one per ISO week,
and the .debs apt downloaded are kept beside it; without the cache it builds everything (about
two minutes). Commands inside the tree run in their own mount, PID and network namespaces: the
host's network is never touched, even by mistake.

The fast tests check the units with `systemd-analyze security --offline=true`, and that the
manual page and the bash completion (generated from the parser) cover every command.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agent import __version__
from agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"
CACHE = Path("/var/cache/blocklist-agent-ci")
SUITE = "bookworm"
MAX_EXPOSURE = 2.0


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "packaging" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*cmd: str | Path, timeout: float = 600, **kwargs: object) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return str(proc.stdout)


# --- systemd units -----------------------------------------------------------------------------

def exposure(unit: Path) -> float:
    out = run("systemd-analyze", "security", "--offline=true", "--no-pager", unit)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    return float(match.group(1))


@pytest.mark.parametrize("unit", ["blocklist-agent.service", "blocklist-agent-boot.service"])
def test_units_are_hardened(unit: str) -> None:
    score = exposure(UNITS / unit)
    print(f"systemd-analyze security exposure of {unit}: {score}")
    assert score <= MAX_EXPOSURE


def directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_service_keeps_what_it_needs_and_never_removes_enforcement() -> None:
    d = directives("blocklist-agent.service")
    assert d["Type"] == ["notify"] and d["WatchdogSec"]
    assert d["ExecStartPre"] == ["/usr/bin/blocklist-agent check-config"]
    assert d["ExecStart"] == ["/usr/bin/blocklist-agent run"]
    # nft needs CAP_NET_ADMIN; writing the RPZ zone into unbound's own 0755 directory needs
    # CAP_DAC_OVERRIDE; nothing else
    assert set(d["CapabilityBoundingSet"][0].split()) == {"CAP_NET_ADMIN", "CAP_DAC_OVERRIDE"}
    assert d["ProtectSystem"] == ["strict"] and d["NoNewPrivileges"] == ["yes"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6",
                                                            "AF_NETLINK"}
    assert "-/var/lib/unbound" in d["ReadWritePaths"][0].split()
    assert d["StateDirectory"] == ["blocklist-agent"]
    boot = directives("blocklist-agent-boot.service")
    assert boot["ExecStart"] == ["/usr/sbin/nft -f /var/lib/blocklist-agent/enforced.nft"]
    assert "network-pre.target" in boot["Before"][0].split()
    assert "nftables.service" in boot["After"][0].split()  # it flushes the whole ruleset
    for unit in (d, boot):  # stopping a unit must never take the table or the zone away
        assert "ExecStop" not in unit and "ExecStopPost" not in unit


def test_the_boot_unit_follows_nftables_service() -> None:
    """`systemctl restart|reload|start nftables` (its nftables.conf begins with `flush
    ruleset`) loads enforced.nft again right after, daemon or not."""
    boot = directives("blocklist-agent-boot.service")
    assert boot["PartOf"] == ["nftables.service"]  # restart (and stop) propagate
    assert boot["ReloadPropagatedFrom"] == ["nftables.service"]
    assert boot["ExecReload"] == boot["ExecStart"]  # a reload loads the same file again
    assert set(boot["WantedBy"][0].split()) == {"sysinit.target", "nftables.service"}
    assert boot["Type"] == ["oneshot"] and boot["RemainAfterExit"] == ["yes"]
    if Path("/lib/systemd/system/nftables.service").exists() and Path("/usr/sbin/nft").exists():
        run("systemd-analyze", "verify", "--man=no", UNITS / "blocklist-agent-boot.service")


# --- manual page and completion ------------------------------------------------------------------

def test_the_manual_page_documents_every_command_and_option() -> None:
    page = gen_docs().manpage()
    parser = build_parser()
    subs: dict[str, argparse.ArgumentParser] = gen_docs().commands(parser)
    assert {"run", "check-config", "sync", "status"} <= set(subs)
    for name, sub in subs.items():
        assert f'.SS "{name.replace("-", chr(92) + "-")}"' in page, name
        for action in sub._actions:
            for option in action.option_strings:
                assert option.replace("-", "\\-") in page, f"{name} {option}"
    assert f"blocklist\\-agent {__version__}" in page


def test_the_manual_page_renders_without_warnings(tmp_path: Path) -> None:
    page = tmp_path / "blocklist-agent.8"
    page.write_text(gen_docs().manpage())
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def complete(script: Path, *words: str) -> list[str]:
    cword = len(words) - 1
    words_text = " ".join(f"'{w}'" for w in words)
    out = run("bash", "-c", f"source {script}; COMP_WORDS=({words_text}); COMP_CWORD={cword}; "
              "_blocklist_agent; printf '%s\\n' \"${COMPREPLY[@]}\"")
    return sorted(line for line in out.splitlines() if line)


def test_bash_completion(tmp_path: Path) -> None:
    script = tmp_path / "blocklist-agent"
    script.write_text(gen_docs().completion())
    assert complete(script, "blocklist-agent", "sy") == ["sync"]
    assert complete(script, "blocklist-agent", "che") == ["check-config"]
    assert complete(script, "blocklist-agent", "-c", "x.yaml", "sync", "--d") == [
        "--debug", "--dry-run"]
    assert complete(script, "blocklist-agent", "parse", "--format", "spa") == [
        "spamhaus-drop", "spamhaus-json"]
    (tmp_path / "feed.txt").write_text("")
    assert complete(script, "blocklist-agent", "parse", str(tmp_path / "fe")) == [
        str(tmp_path / "feed.txt")]
    assert complete(script, "blocklist-agent", "allow", "--reason", "") == []  # free text


def test_versions_agree() -> None:
    changelog = (ROOT / "packaging" / "deb" / "changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"blocklist-agent ({__version__}) ")
    assert f'version = "{__version__}"' in (ROOT / "pyproject.toml").read_text()


# --- the package, installed into a fresh Debian 12 ---------------------------------------------

def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            suites = fields.get("Suites", "").split()
            if SUITE in suites and fields.get("Enabled", "yes") != "no":
                return str(fields["URIs"].split()[0])
    for path in [Path("/etc/apt/sources.list"),
                 *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and SUITE in words:
                    return next(w for w in words[1:] if "://" in w)
    raise AssertionError(f"no apt source for Debian {SUITE} on this machine")


def base_tarball() -> tuple[Path, str]:
    """The cached debootstrap tree of this ISO week, made if missing. Returns (path, how)."""
    year, week, _ = datetime.date.today().isocalendar()
    name = f"{SUITE}-minbase-{year}-W{week:02d}.tar"
    tarball = CACHE / name
    if tarball.exists():
        return tarball, "cached"
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{SUITE}-minbase-*.tar"):  # last week's, and its stale .debs
        old.unlink(missing_ok=True)
    shutil.rmtree(CACHE / "archives", ignore_errors=True)
    tree = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE))
    try:
        run("debootstrap", "--variant=minbase", SUITE, tree, debian_mirror(), timeout=900)
        partial = CACHE / f".{name}.{os.getpid()}"
        run("tar", "-C", tree, "--numeric-owner", "-cf", partial, ".")
        partial.rename(tarball)  # atomic: a concurrent run sees all of it or nothing
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return tarball, "debootstrap"


class Chroot:
    """A Debian tree; commands run in new mount, PID (and, unless asked, network) namespaces."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def sh(self, script: str, *, network: bool = False, timeout: float = 600) -> str:
        spaces = ["--mount", "--pid", "--fork", f"--mount-proc={self.root}/proc"]
        if not network:
            spaces.append("--net")  # nothing in here can touch the host's nftables
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
               "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
        return run("unshare", *spaces, "chroot", self.root, "/bin/sh", "-ec", script,
                   timeout=timeout, env=env)


@pytest.fixture
def debian12() -> Iterator[Chroot]:
    tarball, how = base_tarball()
    root = Path(tempfile.mkdtemp(prefix="blocklist-agent-debian12-"))
    try:
        run("tar", "-C", root, "--numeric-owner", "-xf", tarball)
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        rc = root / "usr" / "sbin" / "policy-rc.d"  # no service starts inside the tree
        rc.write_text("#!/bin/sh\nexit 101\n")
        rc.chmod(0o755)
        archives = CACHE / "archives"
        if archives.is_dir():  # .debs of an earlier run: apt re-checks their hashes
            for deb in archives.glob("*.deb"):
                shutil.copy(deb, root / "var" / "cache" / "apt" / "archives")
        print(f"debian 12 tree: {how} ({tarball})")
        yield Chroot(root)
        archives.mkdir(exist_ok=True)
        for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            if not deb.name.startswith("blocklist-agent_"):
                shutil.copy(deb, archives)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_the_package_installs_and_works_on_a_fresh_debian_12(debian12: Chroot) -> None:
    started = time.monotonic()
    out = run("bash", ROOT / "scripts" / "build-deb.sh", env={**os.environ, "LINTIAN": "1"})
    deb = ROOT / "dist" / f"blocklist-agent_{__version__}_all.deb"
    assert deb.exists(), out
    shutil.copy(deb, debian12.root / "tmp")

    # downloads with the network; the install itself (maintainer scripts, which look at the
    # kernel's nftables) in the tree's own empty network namespace
    def install(*options: str) -> str:
        return (f"apt-get install -y -qq --no-install-recommends {' '.join(options)} "
                f"/tmp/{deb.name} >/tmp/apt.log 2>&1 || {{ tail -40 /tmp/apt.log; exit 1; }}")

    debian12.sh("apt-get update -qq && " + install("--download-only"), network=True,
                timeout=900)
    debian12.sh(install(), timeout=900)
    assert debian12.sh("blocklist-agent --version").strip() == f"blocklist-agent {__version__}"
    # the shipped configuration passes its own check, as installed
    assert debian12.sh("blocklist-agent -v check-config").strip() == \
        "/etc/blocklist-agent/agent.yaml: OK"
    # the example feed needs no network: the whole chain runs on Debian's own libraries
    plan = debian12.sh("blocklist-agent sync --dry-run 2>&1")
    assert "serial 1 (CERT Santé (example))" in plan and "dry run: nothing was changed" in plan
    assert "enforced: " in plan and "enforced: nothing" not in plan

    listing = debian12.sh(
        "dpkg-query -W -f='${Conffiles}\\n' blocklist-agent; "
        "ls /usr/share/man/man8/blocklist-agent.8.gz "
        "/usr/share/bash-completion/completions/blocklist-agent "
        "/etc/systemd/system/multi-user.target.wants/blocklist-agent.service "
        "/etc/systemd/system/sysinit.target.wants/blocklist-agent-boot.service "
        "/etc/systemd/system/nftables.service.wants/blocklist-agent-boot.service")
    assert "/etc/blocklist-agent/agent.yaml" in listing
    assert "blocklist-agent.8.gz" in listing and "sysinit.target.wants" in listing
    assert "nftables.service.wants" in listing  # restarting nftables brings it back
    # the boot unit as installed, against the tree's own nftables.service and nft (the tree
    # has no systemd of its own, so the daemon's unit, which needs sysinit.target, is not)
    run("systemd-analyze", "verify", f"--root={debian12.root}", "--man=no",
        "/lib/systemd/system/blocklist-agent-boot.service")

    lifecycle(debian12, deb.name)

    print(f"build + install + checks: {time.monotonic() - started:.0f} s")


LIFECYCLE = r"""
blocklist-agent sync >/dev/null                       # the table, in this namespace's kernel
nft list table inet blocklist_agent >/dev/null
# an isolation nobody recorded (break-glass.nft loaded by hand, or a purged state)
nft add element inet blocklist_agent iso_wan '{ "wan0" timeout 2h }'
dpkg -i /tmp/DEB > /tmp/reinstall.log 2>&1            # an upgrade, as far as the scripts know
rm -f /var/lib/blocklist-agent/nftables.json          # the next sync reloads the table whole
blocklist-agent sync >/dev/null
echo "kernel after the reinstall and a full reload: $(nft list set inet blocklist_agent \
  iso_wan | tr -d '\n\t')"
echo "recorded: $(cat /var/lib/blocklist-agent/isolation.json)"
cat /tmp/reinstall.log
echo "--- remove"
apt-get remove -y -qq blocklist-agent 2>&1
test -d /var/lib/blocklist-agent && test -f /etc/blocklist-agent/agent.yaml
echo "--- purge"
apt-get purge -y -qq blocklist-agent 2>&1
test ! -e /etc/blocklist-agent/agent.yaml
echo "--- left: $(ls -A /var/lib/blocklist-agent)"
nft list table inet blocklist_agent >/dev/null        # still enforced, as it said
echo "--- purge with BLOCKLIST_AGENT_PURGE_HISTORY"
dpkg -i /tmp/DEB >/dev/null 2>&1
BLOCKLIST_AGENT_PURGE_HISTORY=yes apt-get purge -y -qq blocklist-agent >/dev/null 2>&1
test ! -e /var/lib/blocklist-agent && echo "state dir gone"
"""


def lifecycle(debian12: Chroot, deb: str) -> None:
    """Reinstall while isolated, remove, purge: in the tree's own network namespace, whose
    kernel holds the agent's table like a gateway's would."""
    out = debian12.sh(LIFECYCLE.replace("DEB", deb))
    print(out)
    kernel, _, rest = out.partition("--- remove")
    removed, _, rest = rest.partition("--- purge")
    purged, _, history = rest.partition("--- purge with")
    # an install never lifts an isolation it finds: recorded, kept by a full reload
    assert "the gateway is ISOLATED (the kernel cuts wan0); the install keeps it" in kernel
    assert "blocklist-agent restore" in kernel
    assert '"wan0"' in kernel.split("kernel after", 1)[1].split("recorded:", 1)[0]
    assert '"active": true' in kernel and '"by": "package install"' in kernel
    # remove and purge say what stays in the kernel and how to lift it
    assert "table inet blocklist_agent STAYS in the kernel" in removed
    assert "ISOLATED (iso_wan: wan0" in removed
    assert "nft delete table inet blocklist_agent" in removed
    assert "blocklist-agent restore" in removed
    assert "nft flush set inet blocklist_agent iso_wan" in purged
    assert "nft delete table inet blocklist_agent" in purged
    # purge keeps the audit trail, and only it, unless asked
    assert "the audit trail is kept: /var/lib/blocklist-agent/history.jsonl" in purged
    assert "--- left: history.jsonl\n" in purged
    assert "state dir gone" in history
