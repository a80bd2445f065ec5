"""Real DNS servers inside the lab: Unbound, BIND 9 and Knot Resolver, started and stopped by tests.

Why real servers: RPZ is implemented differently by each resolver (what a wildcard covers,
whether a passthru wins over a blocked parent, whether an `rpz-ip` trigger rewrites a CNAME
chain), so only a query answered by Debian's own Unbound, BIND or kresd proves the zone works.

Every server runs inside a lab namespace, on lab or loopback addresses of that namespace, with
its configuration, pid file, control socket or key and logs in its own temp directory; nothing
reads /etc/unbound or /etc/bind, nothing is started through systemd. `Lab.down()` kills them all
anyway; `Server.stop()` (or `with`) stops one earlier.

    with start_authoritative(lab, {"example.": ZONE}) as upstream, \\
         start_unbound(lab, listen=[(lab.addr["gw_lan1"], 53)],
                       upstream=(upstream.address, 53), rpz_zonefile=path) as unbound:
        msg = query(lab, "lan1", lab.addr["gw_lan1"], "evil.example")
        subprocess.run([*unbound.control, "auth_zone_reload", RPZ_ZONE])

`control` is the command prefix that drives the server from the host (the same string an
operator writes as `dns.control`, with `ip netns exec NS` in front).
"""

from __future__ import annotations

import atexit
import base64
import itertools
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from lab.core import Lab, LabError

RPZ_ZONE = "rpz.blocklist-agent."
"""The default RPZ zone name (the agent's `dns.zone` default)."""

SNIPPETS = Path(__file__).resolve().parent.parent / "config" / "resolvers"
"""The resolver configuration snippets shipped to operators: the lab runs them, so the tests
prove what the README tells people to install."""

DEFAULT_ZONEFILE = {
    "unbound": "/var/lib/unbound/rpz.blocklist-agent.zone",
    "kresd": "/var/lib/knot-resolver/rpz.blocklist-agent.zone",
}


def snippet(name: str, replace: dict[str, str]) -> str:
    """A shipped snippet with its paths and addresses replaced (each must occur in it)."""
    text = (SNIPPETS / name).read_text()
    for old, new in replace.items():
        if old not in text:
            raise LabError(f"config/resolvers/{name} no longer contains {old!r}")
        text = text.replace(old, new)
    return text

_control_ports = itertools.count(9530)  # rndc ports: unique per process, never the default 953


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key, written in BIND's key-file format (what `tsig-keygen` prints)."""

    name: str
    secret: str
    algorithm: str = "hmac-sha256"

    @classmethod
    def generate(cls, name: str = "blocklist-agent") -> TsigKey:
        return cls(name, base64.b64encode(secrets.token_bytes(32)).decode())

    def bind_text(self) -> str:
        return (f'key "{self.name}" {{\n\talgorithm {self.algorithm};\n'
                f'\tsecret "{self.secret}";\n}};\n')


@dataclass
class Server:
    """One DNS server process inside a lab namespace."""

    kind: str
    lab: Lab
    role: str
    workdir: Path
    proc: subprocess.Popen[Any]
    address: str
    port: int
    control: list[str] = field(default_factory=list)
    conf: Path | None = None
    keep_workdir: bool = False

    def stop(self) -> None:
        """Stop the server (idempotent) and remove its temp directory."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.keep_workdir:
            _TEMP_DIRS.discard(self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self) -> str:
        """What the server wrote to its log so far (for assertion messages)."""
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def example_zone(lab: Lab) -> str:
    """The `example.` zone of the lab's internet: names the DNS tests block, allow or resolve.

    evil / www.evil / phish / login.phish / ok.phish / good / new-evil point at the ordinary
    site; c2 (A and AAAA) at the C2 server, to-c2 is a CNAME to it, bad-host is inside the bad
    prefix: names no feed lists, which only an `rpz-ip` trigger can block.
    """
    a = lab.addr
    lines = ["$TTL 60", "@ SOA ns.example. hostmaster.example. 1 60 10 600 60",
             "@ NS ns.example.", f"ns A {a['dns']}"]
    for name in ("evil", "www.evil", "phish", "login.phish", "ok.phish", "good", "new-evil"):
        lines += [f"{name} A {a['site']}", f"{name} AAAA {a['site6']}"]
    lines += [f"c2 A {a['c2']}", f"c2 AAAA {a['c26']}", "to-c2 CNAME c2",
              f"bad-host A {a['bad_prefix_host']}", f"bad-host AAAA {a['bad_prefix_host6']}"]
    return "\n".join(lines) + "\n"


def empty_rpz_zone(zone: str = RPZ_ZONE, serial: int = 1) -> str:
    """An RPZ zone with no policy: what a resolver loads before the agent's first sync."""
    return (f"$ORIGIN {zone}\n$TTL 60\n@ SOA localhost. hostmaster.localhost. {serial} 60 10 "
            "604800 60\n@ NS localhost.\n")


# --- queries -------------------------------------------------------------------------------


def query(lab: Lab, role: str, server: str, name: str, rdtype: str = "A", *, port: int = 53,
          timeout: float = 2.0, rd: bool = True) -> dns.message.Message | None:
    """Ask `server` from inside namespace `role` (UDP); None if no answer came (timeout)."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    msg = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    if not rd:
        msg.flags &= ~dns.flags.RD
    sock = lab.make_socket(role, family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        return dns.query.udp(msg, server, port=port, timeout=timeout, sock=sock)
    except dns.exception.Timeout:
        return None
    finally:
        sock.close()


def addresses(msg: dns.message.Message | None) -> set[str]:
    """The A and AAAA addresses in an answer section."""
    if msg is None:
        return set()
    return {rd.to_text() for rrset in msg.answer
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rd in rrset}


def wait_for(check: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]
             ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabError(f"{what} not ready after {timeout} s; log:\n{log()[-3000:]}")
        time.sleep(0.05)


# --- helpers -------------------------------------------------------------------------------


_TEMP_DIRS: set[Path] = set()  # removed at exit if nobody stopped their server


@atexit.register
def _remove_temp_dirs() -> None:
    for path in list(_TEMP_DIRS):
        shutil.rmtree(path, ignore_errors=True)


def _workdir(kind: str, workdir: Path | None) -> Path:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir
    path = Path(tempfile.mkdtemp(prefix=f"bla-{kind}-"))
    _TEMP_DIRS.add(path)
    return path


def _spawn(lab: Lab, role: str, workdir: Path, *cmd: str) -> subprocess.Popen[Any]:
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - owned by the child from now on
    try:
        return lab.spawn(role, *cmd, stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT)
    finally:
        log.close()


def _alive_or_raise(server: Server) -> Callable[[], bool]:
    def check() -> bool:
        if server.proc.poll() is not None:
            raise LabError(f"{server.kind} exited with {server.proc.returncode}; log:\n"
                           f"{server.log()[-3000:]}")
        return True
    return check


def _answers(lab: Lab, role: str, address: str, port: int, name: str) -> bool:
    return query(lab, role, address, name, "SOA", port=port, timeout=0.3, rd=False) is not None


def _start(server: Server, ready: Callable[[], bool], timeout: float = 15.0) -> Server:
    alive = _alive_or_raise(server)
    try:
        wait_for(lambda: alive() and ready(), timeout, server.kind, server.log)
    except BaseException:
        server.keep_workdir = True  # keep the log for the post-mortem
        server.stop()
        raise
    return server


def _cmd_ok(lab: Lab, role: str, *cmd: str) -> bool:
    try:
        return lab.run(role, *cmd, check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:  # busy loading a big zone
        return False


# --- BIND 9 --------------------------------------------------------------------------------


def _named_conf(workdir: Path, listen: Sequence[tuple[str, int]], control_port: int,
                body: str, *, recursion: bool) -> str:
    ports = sorted({port for _, port in listen})
    listens = "".join(
        f"    listen-on port {port} {{ {' '.join(a + ';' for a, p in listen if p == port)} }};\n"
        for port in ports)
    return (
        f'include "{workdir}/rndc.key";\n'
        f"controls {{ inet 127.0.0.1 port {control_port} allow {{ 127.0.0.1; }} "
        f'keys {{ "rndc-key"; }}; }};\n'
        "options {\n"
        f'    directory "{workdir}";\n'
        f'    pid-file "{workdir}/named.pid";\n'
        f'    session-keyfile "{workdir}/session.key";\n'
        f'    managed-keys-directory "{workdir}";\n'
        f"{listens}"
        "    listen-on-v6 { none; };\n"
        f"    recursion {'yes' if recursion else 'no'};\n"
        "    dnssec-validation no;\n"
        "    allow-query { any; };\n"
        "    notify no;\n"
        f"{body}"
        "};\n"
    )


def _start_named(lab: Lab, role: str, workdir: Path, listen: Sequence[tuple[str, int]],
                 options: str, zones: str, *, recursion: bool, ready_zone: str,
                 kind: str) -> Server:
    control_port = next(_control_ports)
    rndc_key = TsigKey("rndc-key", TsigKey.generate().secret)
    (workdir / "rndc.key").write_text(rndc_key.bind_text())
    (workdir / "rndc.conf").write_text(
        f'include "{workdir}/rndc.key";\n'
        f'options {{ default-key "rndc-key"; default-server 127.0.0.1; '
        f"default-port {control_port}; }};\n")
    conf = workdir / "named.conf"
    conf.write_text(_named_conf(workdir, listen, control_port, options, recursion=recursion)
                    + zones)
    lab.run(role, "named-checkconf", str(conf))
    proc = _spawn(lab, role, workdir, "named", "-g", "-c", str(conf))
    address, port = listen[0]
    server = Server(kind, lab, role, workdir, proc, address, port,
                    control=["ip", "netns", "exec", lab.ns[role], "rndc", "-c",
                             str(workdir / "rndc.conf")], conf=conf)
    return _start(server, lambda: _cmd_ok(lab, role, "rndc", "-c", str(workdir / "rndc.conf"),
                                          "status")
                  and _answers(lab, role, address, port, ready_zone), timeout=180)


def root_zone(address: str, zones: Sequence[str]) -> str:
    """A root zone whose one server is `address`, delegating each of `zones` to it."""
    lines = ["$TTL 300", ". SOA a.root.lab. hostmaster.lab. 1 60 10 600 60",
             ". NS a.root.lab.", f"a.root.lab. A {address}"]
    for name in zones:
        lines += [f"{name} NS a.root.lab."]
    return "\n".join(lines) + "\n"


def start_authoritative(lab: Lab, zones: dict[str, str], *, role: str = "wan",
                        address: str | None = None, port: int = 53,
                        workdir: Path | None = None) -> Server:
    """An authoritative-only BIND serving `zones` (name -> zone text): "the internet"."""
    workdir = _workdir("auth", workdir)
    address = address or lab.addr["dns"]
    if "." not in zones:  # a root that delegates every zone here: resolvers may iterate too
        zones = {".": root_zone(address, list(zones)), **zones}
    stanzas = []
    for index, (name, text) in enumerate(zones.items()):
        path = workdir / f"zone{index}.db"
        path.write_text(text)
        stanzas.append(f'zone "{name}" {{ type primary; file "{path}"; }};\n')
    return _start_named(lab, role, workdir, [(address, port)], "", "".join(stanzas),
                        recursion=False, ready_zone=next(iter(zones)), kind="authoritative")


def start_bind_resolver(lab: Lab, *, listen: Sequence[tuple[str, int]],
                        upstream: tuple[str, int], rpz_zonefile: Path, role: str = "gw",
                        zone: str = RPZ_ZONE, workdir: Path | None = None) -> Server:
    """A recursive BIND forwarding to `upstream`, enforcing the RPZ zone file (the `bind`
    backend's setup, as in config/resolvers/bind.conf)."""
    if not rpz_zonefile.exists():
        rpz_zonefile.parent.mkdir(parents=True, exist_ok=True)
        rpz_zonefile.write_text(empty_rpz_zone(zone))
    workdir = _workdir("bind", workdir)
    options = (
        f"    forwarders {{ {upstream[0]} port {upstream[1]}; }};\n"
        "    forward only;\n"
        f'    response-policy {{ zone "{zone}" min-update-interval 0; }};\n'
    )
    zones = (f'zone "{zone}" {{ type primary; file "{rpz_zonefile}"; '
             "allow-query { localhost; }; };\n")
    return _start_named(lab, role, workdir, listen, options, zones, recursion=True,
                        ready_zone=zone, kind="bind")


def start_bind_primary(lab: Lab, *, tsig: TsigKey, notify: Sequence[tuple[str, int]] = (),
                       listen: tuple[str, int] = ("127.0.0.1", 5300), role: str = "gw",
                       zone: str = RPZ_ZONE, ttl: int = 60, workdir: Path | None = None,
                       initial: str | None = None, notify_delay: float = 0) -> Server:
    """The dnsupdate path's primary: an RPZ zone (empty, or `initial`) the agent updates with
    RFC 2136 + TSIG, NOTIFYing `notify` and serving IXFR (as config/resolvers/bind-primary.conf).
    """
    workdir = _workdir("primary", workdir)
    (workdir / "tsig.key").write_text(tsig.bind_text())
    zonefile = workdir / "rpz.db"
    zonefile.write_text(initial or (
        f"$TTL {ttl}\n@ SOA localhost. hostmaster.localhost. 1 60 10 604800 {ttl}\n"
        "@ NS localhost.\n"))
    targets = " ".join(f"{addr} port {port};" for addr, port in notify)
    zones = (
        f'include "{workdir}/tsig.key";\n'
        f'zone "{zone}" {{\n'
        "    type primary;\n"
        f'    file "{zonefile}";\n'
        f'    allow-update {{ key "{tsig.name}"; }};\n'
        f'    allow-transfer {{ key "{tsig.name}"; 127.0.0.0/8; 10.10.0.0/16; }};\n'
        f"    notify {'explicit' if targets else 'no'};\n"
        + (f"    also-notify {{ {targets} }};\n" if targets else "")
        + f"    notify-delay {notify_delay:g};\n"
        "    max-journal-size 64M;\n"
        "};\n")
    return _start_named(lab, role, workdir, [listen], "", zones, recursion=False,
                        ready_zone=zone, kind="primary")


def start_knot_primary(lab: Lab, *, tsig: TsigKey, notify: Sequence[tuple[str, int]] = (),
                       listen: tuple[str, int] = ("127.0.0.1", 5300), role: str = "gw",
                       workdir: Path | None = None) -> Server:
    """The dnsupdate path's primary, with Knot DNS: config/resolvers/knot-primary.conf as
    shipped, with this lab's key, paths and addresses."""
    workdir = _workdir("knot", workdir)
    (workdir / "db").mkdir(exist_ok=True)
    (workdir / "rpz.blocklist-agent.zone").write_text(
        (SNIPPETS / "rpz.blocklist-agent.zone").read_text())
    remotes = "".join(f"  - id: follower-{i}\n    address: {addr}@{port}\n"
                      for i, (addr, port) in enumerate(notify))
    text = snippet("knot-primary.conf", {
        "    listen: 127.0.0.1@5300\n": f"    listen: {listen[0]}@{listen[1]}\n"
                                       f"    rundir: {workdir}\n",
        "    algorithm: hmac-sha256\n": f"    algorithm: {tsig.algorithm}\n",
        "REPLACE-WITH-THE-SECRET-FROM-KEYMGR": tsig.secret,
        "  - id: blocklist-agent\n    algorithm": f"  - id: {tsig.name}\n    algorithm",
        "  - id: rpz-follower-local\n    address: 127.0.0.1@53\n": remotes or "",
        "    notify: rpz-follower-local\n": ("    notify: [" + ", ".join(
            f"follower-{i}" for i in range(len(notify))) + "]\n") if notify else "",
        "/var/lib/knot/": f"{workdir}/",
        "zone:\n  - domain": f"template:\n  - id: default\n    storage: {workdir}\n\n"
                             "zone:\n  - domain",
    })
    if not notify:
        text = text.replace("remote:\n", "")
    conf = workdir / "knot.conf"
    conf.write_text("log:\n  - target: stderr\n    any: info\n\n"
                    f"database:\n    storage: {workdir}/db\n\n" + text)
    lab.run(role, "knotc", "-c", str(conf), "conf-check")
    proc = _spawn(lab, role, workdir, "knotd", "-c", str(conf))
    server = Server("knot", lab, role, workdir, proc, listen[0], listen[1],
                    control=["ip", "netns", "exec", lab.ns[role], "knotc", "-c", str(conf)],
                    conf=conf)
    return _start(server, lambda: _answers(lab, role, listen[0], listen[1], RPZ_ZONE))


# --- Unbound -------------------------------------------------------------------------------


def start_unbound(lab: Lab, *, listen: Sequence[tuple[str, int]], upstream: tuple[str, int],
                  rpz_zonefile: Path | None = None, rpz_primary: tuple[str, int] | None = None,
                  role: str = "gw", zone: str = RPZ_ZONE, workdir: Path | None = None,
                  extra: str = "") -> Server:
    """A recursive Unbound forwarding to `upstream` with the shipped `rpz:` snippet: reading
    `rpz_zonefile` (config/resolvers/unbound.conf, the `unbound` backend) or following
    `rpz_primary` by IXFR (unbound-follower.conf, the dnsupdate path). `extra`: more `server:`
    lines."""
    if (rpz_zonefile is None) == (rpz_primary is None):
        raise LabError("start_unbound: give exactly one of rpz_zonefile and rpz_primary")
    if rpz_zonefile is not None and not rpz_zonefile.exists():  # Unbound refuses to start
        rpz_zonefile.parent.mkdir(parents=True, exist_ok=True)
        rpz_zonefile.write_text(empty_rpz_zone(zone))
    workdir = _workdir("unbound", workdir)
    interfaces = "".join(f"    interface: {addr}@{port}\n" for addr, port in listen)
    # the shipped configuration snippet, with this lab's paths and addresses
    if rpz_zonefile is not None:
        rpz = snippet("unbound.conf", {DEFAULT_ZONEFILE["unbound"]: str(rpz_zonefile),
                                       f"name: {RPZ_ZONE}": f"name: {zone}"})
    else:
        assert rpz_primary is not None
        host, port = rpz_primary
        rpz = snippet("unbound-follower.conf", {
            "primary: 127.0.0.1@5300": f"primary: {host}@{port}",
            "allow-notify: 127.0.0.1": f"allow-notify: {host}",
            f"name: {RPZ_ZONE}": f"name: {zone}"})
    (workdir / "blocklist-agent.conf").write_text(rpz)
    conf = workdir / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"{interfaces}"
        "    access-control: 0.0.0.0/0 allow\n"
        "    access-control: ::/0 allow\n"
        '    username: ""\n'
        '    chroot: ""\n'
        f'    directory: "{workdir}"\n'
        f'    pidfile: "{workdir}/unbound.pid"\n'
        "    use-syslog: no\n"
        '    logfile: ""\n'
        "    verbosity: 1\n"
        "    log-time-ascii: yes\n"
        "    do-not-query-localhost: no\n"
        "    do-ip6: no\n"
        "    num-threads: 1\n"
        f"{extra}"
        "forward-zone:\n"
        '    name: "."\n'
        f"    forward-addr: {upstream[0]}@{upstream[1]}\n"
        "remote-control:\n"
        "    control-enable: yes\n"
        f"    control-interface: {workdir}/unbound.ctl\n"
        "    control-use-cert: no\n"
        f'include: "{workdir}/blocklist-agent.conf"\n')
    lab.run(role, "unbound-checkconf", str(conf))
    proc = _spawn(lab, role, workdir, "unbound", "-d", "-c", str(conf))
    control = ["ip", "netns", "exec", lab.ns[role], "unbound-control", "-c", str(conf)]
    address, port = listen[0]
    server = Server("unbound", lab, role, workdir, proc, address, port, control=control,
                    conf=conf)
    return _start(server, lambda: _cmd_ok(lab, role, "unbound-control", "-c", str(conf),
                                          "status"))


# --- Knot Resolver -------------------------------------------------------------------------


def start_kresd(lab: Lab, *, listen: Sequence[tuple[str, int]], upstream: tuple[str, int],
                rpz_zonefile: Path, role: str = "gw", workdir: Path | None = None) -> Server:
    """kresd forwarding to `upstream`, with `policy.rpz` watching the zone file (the
    `knot-resolver` backend, as in config/resolvers/kresd.conf)."""
    if not rpz_zonefile.exists():
        rpz_zonefile.parent.mkdir(parents=True, exist_ok=True)
        rpz_zonefile.write_text(empty_rpz_zone())
    workdir = _workdir("kresd", workdir)
    listens = "".join(f"net.listen('{addr}', {port}, {{ kind = 'dns' }})\n"
                      for addr, port in listen)
    conf = workdir / "kresd.conf"
    conf.write_text(
        f"{listens}"
        "trust_anchors.remove('.')\n"
        "modules.load('hints')\n"
        f"hints.root({{['a.root.lab.'] = '{upstream[0]}'}})\n"
        f"cache.open(10 * MB, 'lmdb://{workdir}/cache')\n"
        + snippet("kresd.conf", {DEFAULT_ZONEFILE["kresd"]: str(rpz_zonefile)}))
    (workdir / "run").mkdir(exist_ok=True)
    proc = _spawn(lab, role, workdir, "kresd", "-n", "-c", str(conf), str(workdir / "run"))
    address, port = listen[0]
    server = Server("kresd", lab, role, workdir, proc, address, port, conf=conf)
    return _start(server, lambda: query(lab, role, address, ".", "SOA", port=port,
                                        timeout=0.3) is not None)

