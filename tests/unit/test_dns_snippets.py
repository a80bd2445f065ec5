"""The resolver snippets shipped in config/resolvers/ are valid for Debian 12's own checkers and
agree with the agent's defaults. (The Unbound and Knot Resolver snippets are also what the lab
runs in tests/lab/test_dns_resolvers.py and tests/lab/test_dns_update.py.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from agent.config import DnsConfig
from agent.merge import Blocklist
from agent.render.rpz import render_zone
from lab.resolvers import DEFAULT_ZONEFILE, SNIPPETS, snippet

DEFAULTS = DnsConfig()
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": PATH}, check=False)


def rpz_zone(tmp_path: Path) -> Path:
    path = tmp_path / "rpz.zone"
    path.write_text(render_zone(DEFAULTS, Blocklist(names=frozenset({"evil.example"})), 7))
    return path


def test_every_snippet_names_the_agents_default_zone() -> None:
    for path in SNIPPETS.iterdir():
        if path.suffix in (".conf",):
            assert DEFAULTS.zone in path.read_text(), path.name
    assert DEFAULTS.zonefile == DEFAULT_ZONEFILE["unbound"]


@pytest.mark.parametrize("name", ["unbound.conf", "unbound-follower.conf"])
def test_unbound_snippets_pass_unbound_checkconf(tmp_path: Path, name: str) -> None:
    zonefile = DEFAULT_ZONEFILE["unbound"]
    text = snippet(name, {zonefile: str(rpz_zone(tmp_path))} if name == "unbound.conf" else {})
    if name == "unbound-follower.conf":  # on purpose: see the snippet's comment
        assert "zonefile:" not in text.replace("No zonefile:", "")
    (tmp_path / "snippet.conf").write_text(text)
    conf = tmp_path / "unbound.conf"
    conf.write_text(f'server:\n    chroot: ""\n    username: ""\n    directory: "{tmp_path}"\n'
                    f'    pidfile: "{tmp_path}/pid"\ninclude: "{tmp_path}/snippet.conf"\n')
    proc = run("unbound-checkconf", str(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "for-downstream: yes" in text and "respip" in text


def test_bind_resolver_snippet_passes_named_checkconf(tmp_path: Path) -> None:
    text = snippet("bind.conf", {"/var/lib/bind/rpz.blocklist-agent.zone":
                                 str(rpz_zone(tmp_path))})
    conf = tmp_path / "named.conf"
    conf.write_text(text)
    proc = run("named-checkconf", "-z", str(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loaded serial 7" in proc.stdout
    assert re.search(r"response-policy \{[^}]*min-update-interval 0;", text)


def test_bind_primary_snippet_and_its_empty_zone(tmp_path: Path) -> None:
    key = tmp_path / "blocklist-agent.key"
    key.write_text(run("tsig-keygen", "blocklist-agent").stdout)
    zone = tmp_path / "rpz.blocklist-agent.zone"
    zone.write_text((SNIPPETS / "rpz.blocklist-agent.zone").read_text())
    text = snippet("bind-primary.conf", {
        "/etc/bind/blocklist-agent.key": str(key),
        "/var/lib/bind/rpz.blocklist-agent.zone": str(zone)})
    conf = tmp_path / "named.conf"
    conf.write_text(text)
    proc = run("named-checkconf", "-z", str(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'allow-update { key "blocklist-agent"; };' in text and "notify-delay 0;" in text
    check = run("named-checkzone", DEFAULTS.zone, str(zone))
    assert check.returncode == 0 and "loaded serial 1" in check.stdout


def test_kresd_snippet_watches_the_zone_file() -> None:
    text = (SNIPPETS / "kresd.conf").read_text()
    code = [line for line in text.splitlines() if line and not line.startswith("--")]
    assert code == [f"policy.add(policy.rpz(policy.DENY, '{DEFAULT_ZONEFILE['kresd']}', true))"]


def test_knot_primary_snippet_has_no_usable_default_key(tmp_path: Path) -> None:
    """Unedited, the snippet must not load (a key everyone knows would let anyone update the
    zone); with a real key it passes `knotc conf-check`."""
    original = SNIPPETS / "knot-primary.conf"
    assert run("knotc", "-c", str(original), "conf-check").returncode != 0
    conf = tmp_path / "knot.conf"
    conf.write_text(snippet("knot-primary.conf", {
        "REPLACE-WITH-THE-SECRET-FROM-KEYMGR": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        "/var/lib/knot/": f"{tmp_path}/"}))
    proc = run("knotc", "-c", str(conf), "conf-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
