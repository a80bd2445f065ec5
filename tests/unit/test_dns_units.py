"""The DNS backends' pure parts: the record diff of a plan, UPDATE batching, the blocklist
fingerprint, the agent's own zone check, TSIG key files, configuration and registry."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.update
import pytest

from agent import ledger
from agent.backends import dns_update
from agent.backends.base import ApplyContext
from agent.backends.dns_bind import BindBackend
from agent.backends.dns_client import TsigKey, load_tsig_key, split_server
from agent.backends.dns_common import (
    Command,
    check_zone_text,
    fingerprint,
    fingerprint_before,
    install_zone,
)
from agent.backends.dns_knot import KnotResolverBackend
from agent.backends.dns_unbound import UnboundBackend
from agent.backends.dns_update import (
    Change,
    DnsUpdateBackend,
    batches,
    diff,
    full_diff,
)
from agent.backends.dns_zonefile import ZoneFileBackend
from agent.backends.registry import dns_backend_for
from agent.config import Config, DnsConfig, loads
from agent.errors import ApplyError, ConfigError
from agent.indicators import normalize
from agent.ledger import Delta, LazyBlocklist
from agent.merge import SET_NAMES, Blocklist, merge
from agent.plan import make_plan
from agent.render.rpz import changed_records, render_zone, zone_records
from agent.state import StateStore

ZONE = "rpz.blocklist-agent."
DNS = DnsConfig(zone=ZONE, ttl=60)
POOL_NAMES = [f"n{i}.example" for i in range(12)] + ["x.n1.example", "y.x.n1.example"]
POOL_IPS = ["192.0.2.1", "192.0.2.2", "198.51.100.0/24", "203.0.113.7", "2001:db8::1",
            "2001:db8:1::/48"]


def random_blocklist(rng: random.Random) -> Blocklist:
    """Feeds and allows drawn from small pools, so that values move between sets."""
    values = [v if rng.random() < 0.7 else f"*.{v}" for v in rng.sample(POOL_NAMES, 7)]
    values += rng.sample(POOL_IPS, 3)
    allows = [v if rng.random() < 0.5 else f"*.{v}" for v in rng.sample(POOL_NAMES, 3)]
    allows += rng.sample(POOL_IPS, 1)
    return merge([[normalize(v) for v in values]], allow=[normalize(v) for v in allows])


def apply_changes(records: dict[str, str], changes: list[Change]) -> dict[str, str]:
    out = dict(records)
    for change in changes:
        if change.old is not None:
            out.pop(change.owner, None)
        if change.new is not None:
            out[change.owner] = change.new
    return out


def recorded(base: Blocklist, bl: Blocklist) -> LazyBlocklist:
    """`bl` as a sync's record holds it: the text of a base and the difference from it."""
    blobs = {name: "\n".join(sorted(getattr(base, name))) for name in SET_NAMES}
    delta = Delta({n: getattr(bl, n) - getattr(base, n) for n in SET_NAMES},
                  {n: getattr(base, n) - getattr(bl, n) for n in SET_NAMES})
    return LazyBlocklist(lambda: blobs, delta, bl.counts())


@pytest.mark.parametrize("seed", range(60))
def test_plan_diff_turns_the_old_zone_into_the_new_one(seed: int) -> None:
    """What the incremental path sends, applied to the old zone, is exactly the new zone;
    the same from the record of the new list (its sets built only when they must be)."""
    rng = random.Random(seed)
    old, new = random_blocklist(rng), random_blocklist(rng)
    plan = make_plan(old, new, max_change=1.0)
    before, after = changed_records(DNS, new, plan.changes)
    changes = diff(before, after)
    assert apply_changes(zone_records(DNS, old), changes) == zone_records(DNS, new)
    touched = {c.owner for c in changes}
    assert len(touched) == len(changes)  # one change per owner: delete and add go together
    for base in (old, random_blocklist(rng), Blocklist()):
        assert changed_records(DNS, recorded(base, new), plan.changes) == (before, after)


def test_a_record_answers_membership_without_building_its_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"h{i}.example" for i in range(1000)]
    base = Blocklist(names=frozenset(names))
    new = base._replace(names=base.names - {"h1.example", "h2.example"} | {"fresh.example"})
    lazy = recorded(base, new)
    # first line, last line, middle, a line's tail, a value the difference decides
    asked = ["h0.example", names[-1], "h500.example", "0.example", "h1.example",
             "fresh.example", "nope.example", "h99.example"]
    assert lazy.holding("names", asked) == frozenset(v for v in asked if v in new.names)
    assert lazy.holding("names", iter(asked)) == lazy.holding("names", asked)  # read once
    assert lazy.loaded() == []
    monkeypatch.setattr(ledger, "FEW_SEARCHES", 2)  # more to look for: the set is built
    assert lazy.holding("names", asked) == frozenset(v for v in asked if v in new.names)
    assert lazy.loaded() == ["names"]
    single = recorded(Blocklist(names=frozenset({"only.example"})), Blocklist(
        names=frozenset({"only.example"})))
    assert single.holding("names", ["only.example", "nly.example"]) == {"only.example"}
    # a plan that changes names only reads no set of a million-name record
    plan = make_plan(base, new, max_change=1.0)
    fresh = recorded(base, new)
    assert changed_records(DNS, fresh, plan.changes) == changed_records(DNS, new, plan.changes)
    assert "names" not in fresh.loaded()


def test_plan_diff_costs_the_change_not_the_list() -> None:
    big = Blocklist(names=frozenset(f"h{i}.example" for i in range(50_000)))
    new = big._replace(names=big.names - {"h1.example"} | {"fresh.example"})
    plan = make_plan(big, new, max_change=1.0)
    before, after = changed_records(DNS, new, plan.changes)
    assert before == {"h1.example": "CNAME ."} and after == {"fresh.example": "CNAME ."}
    assert diff(before, after) == [Change("fresh.example", None, "CNAME ."),
                                   Change("h1.example", "CNAME .", None)]  # adds first


def test_full_diff_repairs_whatever_the_primary_holds() -> None:
    current = {"a.example": (60, frozenset({"CNAME ."})),  # right
               "b.example": (300, frozenset({"CNAME ."})),  # wrong ttl
               "c.example": (60, frozenset({"CNAME .", "A 192.0.2.1"})),  # extra data
               "stale.example": (60, frozenset({"CNAME ."}))}
    desired = {"a.example": "CNAME .", "b.example": "CNAME .", "c.example": "CNAME .",
               "new.example": "CNAME rpz-passthru."}
    changes = full_diff(current, desired, 60)
    assert changes == [Change("b.example", "*", "CNAME ."), Change("c.example", "*", "CNAME ."),
                       Change("new.example", None, "CNAME rpz-passthru."),
                       Change("stale.example", "*", None)]


def test_batches_stay_under_64_kib_and_keep_each_owner_whole() -> None:
    changes = [Change(f"{'x' * 60}.{i}.example", "CNAME .", "CNAME rpz-passthru.")
               for i in range(3000)]
    messages = list(batches(ZONE, 60, changes))
    assert len(messages) > 3
    seen: list[str] = []
    for msg in messages:
        wire = msg.to_wire()
        assert len(wire) < 65_535
        back = dns.message.from_wire(wire)
        owners = [r.name.to_text() for r in back.update]
        # every owner: its delete (class ANY) then its add, in the same message
        assert owners[0::2] == owners[1::2]
        seen += owners[0::2]
    assert len(seen) == 3000


def test_batched_rdata_is_absolute() -> None:
    """"CNAME ." is the root (NXDOMAIN), never the zone's apex; passthru stays rpz-passthru."""
    msg = next(batches(ZONE, 60, [Change("a.example", None, "CNAME ."),
                                  Change("b.example", None, "CNAME rpz-passthru."),
                                  Change("c.example", None, "CNAME *."),
                                  Change("d.example", None, "A 192.0.2.80")]))
    back = dns.message.from_wire(msg.to_wire())
    texts = {r.name.to_text(): r[0].to_text() for r in back.update}
    assert texts == {f"a.example.{ZONE}": ".", f"b.example.{ZONE}": "rpz-passthru.",
                     f"c.example.{ZONE}": "*.", f"d.example.{ZONE}": "192.0.2.80"}


def test_fingerprint_of_the_baseline_follows_from_the_change() -> None:
    rng = random.Random(7)
    for _ in range(20):
        old, new = random_blocklist(rng), random_blocklist(rng)
        plan = make_plan(old, new, max_change=1.0)
        assert fingerprint_before(fingerprint(new), plan.changes) == fingerprint(old)
    a = Blocklist(names=frozenset({"a.example"}))
    assert fingerprint(a) != fingerprint(Blocklist(names=frozenset({"b.example"})))
    assert fingerprint(a) != fingerprint(Blocklist(wild=frozenset({"a.example"})))
    assert len(fingerprint(a).split()) == len(SET_NAMES)


def test_rpz_special_names_are_never_rendered(caplog: pytest.LogCaptureFixture) -> None:
    """`8.0.0.0.10.rpz-ip` would be an IP trigger for 10.0.0.0/8: dropped, with a warning."""
    sneaky = Blocklist(names=frozenset({"8.0.0.0.10.rpz-ip", "ns.rpz-nsdname", "ok.example"}),
                       wild=frozenset({"x.rpz-client-ip"}))
    text = render_zone(DNS, sneaky, 5)
    assert "rpz-ip CNAME" not in text and "rpz-nsdname" not in text
    assert "rpz-client-ip" not in text and "ok.example CNAME ." in text
    assert "RPZ special triggers" in caplog.text
    assert zone_records(DNS, sneaky) == {"ok.example": "CNAME ."}


@pytest.mark.parametrize("action", ["nxdomain", "nodata", "drop", "redirect:192.0.2.80",
                                    "redirect:2001:db8::80", "redirect:blocked.example"])
def test_own_check_accepts_every_rendered_zone(action: str) -> None:
    sample = merge([[normalize(v) for v in ["evil.example", "*.phish.example", "192.0.2.7",
                                            "2001:db8::/32", "203.0.113.0/24"]]],
                   allow=[normalize("ok.phish.example"), normalize("192.0.2.9")])
    check_zone_text(render_zone(DnsConfig(zone=ZONE, action=action), sample, 42), ZONE, 42)


@pytest.mark.parametrize(("mangle", "problem"), [
    (lambda t: t + "evil.example NS attacker.example.\n", "line 8 is not a record"),
    (lambda t: t + "$INCLUDE /etc/shadow\n", "is not a record"),
    (lambda t: t.replace(" 42 ", " 41 "), "expected one SOA with serial 42"),
    (lambda t: t[:-3], "does not end with a newline"),
    (lambda t: t.replace("$ORIGIN rpz", "$ORIGIN other"), "does not start with"),
])
def test_own_check_refuses_what_the_renderer_never_writes(mangle: object, problem: str) -> None:
    text = render_zone(DNS, Blocklist(names=frozenset({"a.example", "b.example"})), 42)
    with pytest.raises(ApplyError) as err:
        check_zone_text(mangle(text), ZONE, 42)  # type: ignore[operator]
    assert problem in err.value.what and err.value.reason == "dns-zone-check"


def test_install_zone_keeps_the_last_good_file(tmp_path: Path) -> None:
    path = tmp_path / "rpz.zone"
    good = render_zone(DNS, Blocklist(names=frozenset({"a.example"})), 1)
    install_zone(path, good, zone=ZONE, serial=1, check=None, reload=lambda: None)
    assert path.read_text() == good
    bad = render_zone(DNS, Blocklist(names=frozenset({"b.example"})), 2) + "junk\n"
    with pytest.raises(ApplyError):
        install_zone(path, bad, zone=ZONE, serial=2, check=None, reload=lambda: None)
    assert path.read_text() == good
    assert (tmp_path / "rpz.zone.rejected").read_text() == bad
    refused = Command(["false"], package="coreutils")
    newer = render_zone(DNS, Blocklist(names=frozenset({"c.example"})), 3)
    with pytest.raises(ApplyError, match=r"`false rpz\.blocklist-agent"):
        install_zone(path, newer, zone=ZONE, serial=3, check=refused, reload=lambda: None)
    assert path.read_text() == good

    loads: list[str] = []

    def failing_reload() -> None:
        loads.append(path.read_text())
        if len(loads) == 1:
            raise ApplyError("the resolver choked")

    with pytest.raises(ApplyError) as err:
        install_zone(path, newer, zone=ZONE, serial=3, check=None, reload=failing_reload)
    assert loads == [newer, good] and path.read_text() == good
    assert "put back and reloaded" in err.value.hint


def test_command_errors_say_what_failed_and_what_to_do() -> None:
    with pytest.raises(ApplyError) as err:
        Command(["no-such-unbound-control"], package="unbound").run("status")
    assert "install the unbound package" in err.value.hint
    with pytest.raises(ApplyError) as err:
        Command(["sh", "-c", "echo 'error no auth-zone x.'; exit 1", "-"], package="dash").run()
    assert "error no auth-zone x." in err.value.what and "exit 1" in err.value.what


def test_tsig_key_file_from_tsig_keygen(tmp_path: Path) -> None:
    path = tmp_path / "tsig.key"
    path.write_text(subprocess.run(["tsig-keygen", "-a", "hmac-sha512", "agent-key"],
                                   capture_output=True, text=True, check=True).stdout)
    key = load_tsig_key(str(path))
    assert (key.name, key.algorithm) == ("agent-key", "hmac-sha512")
    msg = dns.update.UpdateMessage(ZONE)
    msg.use_tsig(key.keyring(), key.name, algorithm=key.algorithm)
    assert msg.to_wire()  # signs
    path.write_text('// key "old" { algorithm hmac-md5; secret "b2xk"; };\n'
                    'key "agent" { algorithm hmac-sha256; secret "ab//cd+/ef0="; };\n')
    assert load_tsig_key(str(path)) == TsigKey("agent", "hmac-sha256", "ab//cd+/ef0=")
    path.write_text("secret nothing;\n")
    with pytest.raises(ConfigError, match="no TSIG key found"):
        load_tsig_key(str(path))
    with pytest.raises(ConfigError, match="cannot read the TSIG key file"):
        load_tsig_key(str(tmp_path / "missing.key"))


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.53", ("192.0.2.53", 53)), ("192.0.2.53:5300", ("192.0.2.53", 5300)),
    ("[2001:db8::53]:5353", ("2001:db8::53", 5353)), ("2001:db8::53", ("2001:db8::53", 53)),
    ("ns1.example", ("ns1.example", 53)),
])
def test_split_server(text: str, expected: tuple[str, int]) -> None:
    assert split_server(text) == expected


def test_dns_config_check_and_resolver() -> None:
    config = loads("dns:\n  backend: unbound\n  check: named-checkzone -i local\n"
                   "  resolver: '[2001:db8::53]:53'\n")
    assert config.dns.check == "named-checkzone -i local"
    assert config.dns.resolver == "[2001:db8::53]:53"


def test_dnsupdate_needs_a_tsig_key_file() -> None:
    with pytest.raises(ConfigError) as err:
        loads("dns:\n  backend: dnsupdate\n  server: 127.0.0.1:5300\n")
    assert "dns.tsig_key_file: missing" in str(err.value)


def test_registry_builds_each_backend(tmp_path: Path) -> None:
    def config(**dns: str) -> Config:
        return Config(dns=DnsConfig(**dns))  # type: ignore[arg-type]

    unbound = dns_backend_for(config(backend="unbound", control="unbound-control -c /x.conf"))
    assert isinstance(unbound, UnboundBackend) and unbound.check is None
    assert unbound.control is not None and unbound.control.command == [
        "unbound-control", "-c", "/x.conf"]
    bind = dns_backend_for(config(backend="bind"))
    assert isinstance(bind, BindBackend) and bind.check is not None
    assert bind.check.command == ["named-checkzone"]
    assert isinstance(dns_backend_for(config(backend="knot-resolver")), KnotResolverBackend)
    assert dns_backend_for(config(backend="none")) is None
    key = tmp_path / "k.key"
    key.write_text('key "agent" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0"; };\n')
    update = dns_backend_for(config(backend="dnsupdate", server="127.0.0.1:5300",
                                    tsig_key_file=str(key)))
    assert isinstance(update, DnsUpdateBackend) and update.key.name == "agent"


def test_knot_resolver_zone_has_no_ip_triggers() -> None:
    sample = merge([[normalize(v) for v in ["evil.example", "192.0.2.7", "2001:db8::/32"]]])
    text = KnotResolverBackend().render(DNS, sample, 3)
    assert "evil.example CNAME ." in text and "rpz-ip" not in text
    check_zone_text(text, ZONE, 3)


def test_update_rdata_types_match_the_zone_file() -> None:
    """The update path and the zone file render the same records (one definition)."""
    sample = merge([[normalize(v) for v in ["evil.example", "*.phish.example", "192.0.2.7"]]],
                   allow=[normalize("ok.phish.example")])
    cfg = DnsConfig(zone=ZONE, action="redirect:192.0.2.80")
    lines = {line for line in render_zone(cfg, sample, 1).splitlines()[5:]}
    assert lines == {f"{o} {r}" for o, r in zone_records(cfg, sample).items()}
    msg = next(batches(ZONE, 60, [Change(o, None, r)
                                  for o, r in zone_records(cfg, sample).items()]))
    types = {dns.rdatatype.to_text(r.rdtype) for r in dns.message.from_wire(msg.to_wire()).update}
    assert types == {"A", "CNAME"}
    assert dns_update.WIRE_BUDGET < 65_535


class RecordingBackend(ZoneFileBackend):
    """A zone-file backend whose "resolver" records the reloads (no DNS query is made)."""

    name = "unbound"

    def __init__(self) -> None:
        super().__init__()
        self.reloads: list[str] = []

    def reload(self, zone: str) -> None:
        self.reloads.append(zone)

    def confirm(self, config: Config, serial: int) -> str:
        return "confirmed"


def test_zone_file_backend_reloads_only_when_the_resolver_needs_it(tmp_path: Path) -> None:
    config = Config(state_dir=str(tmp_path / "state"),
                    dns=DnsConfig(backend="unbound", zonefile=str(tmp_path / "rpz.zone")))
    store = StateStore(config.state_dir)
    backend = RecordingBackend()
    a = Blocklist(names=frozenset({"a.example"}))
    b = Blocklist(names=frozenset({"b.example"}))

    def apply(previous: Blocklist | None, target: Blocklist, serial: int) -> str:
        plan = make_plan(previous, target, max_change=1.0)
        return backend.apply(plan, target, ApplyContext(config, store, serial))

    assert "serial 10 installed, confirmed" in apply(None, a, 10)
    assert apply(a, a, 11) == "dns unbound: unchanged, zone rpz.blocklist-agent. serial 10"
    assert len(backend.reloads) == 1
    apply(a, b, 12)  # applied here, but say another backend failed: `a` stays the baseline
    assert "serial 13 installed" in apply(a, a, 13)  # an empty plan, yet the resolver has b
    assert "a.example CNAME ." in Path(config.dns.zonefile).read_text()
    assert len(backend.reloads) == 3
