"""`Lab`: five network namespaces wired as a hospital gateway, built and torn down by one object.

Why namespaces: the agent's job is to change a firewall. A wrong rule on the host running the
tests would cut it off its package mirror or its operator, so every rule, address, route and
process of a test lives in namespaces that the test creates and deletes (docs/design.md §9).

Safety rules this file keeps, and why:

* Nothing is ever created in the host namespace. Veth pairs are created from inside ns gw with
  their peer end placed directly in the other namespace (`ip -n GW link add ... peer ... netns X`),
  so no interface ever exists in the host namespace, not even for a moment. Every command goes
  through `ip -n NS` or `ip netns exec NS`; sysctls are written by a process inside the namespace.
* Sockets opened by this process for probes are created by a short-lived thread that has entered
  the namespace with setns(2), and the thread checks that it really is inside the namespace
  before creating the socket: a probe can never silently go out of the host's own interfaces.
* Teardown always runs: context manager, `down()` on failure inside `up()`, an atexit hook, and
  SIGTERM/SIGHUP turned into KeyboardInterrupt (like Ctrl-C) so the `with` block unwinds. Child
  processes get PR_SET_PDEATHSIG so they die with us even on SIGKILL; namespaces left by a killed
  run are named after its PID and removed by `python -m lab cleanup`.
* `down()` kills every process whose network namespace is one of the lab's (not just the ones it
  spawned: a daemon that forked itself into the background is found too), then deletes the
  namespaces, which destroys their interfaces, addresses, routes and nft tables with them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import ipaddress
import os
import re
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from lab import topology
from lab.topology import ECHO_PORT, HTTP_PORT, LINKS, ROLES, WAN_ANYIP, WAN_HOSTS

NETNS_DIR = "/run/netns"
SERVER_SCRIPT = str(Path(__file__).with_name("_server.py"))

_READY_PORT = 9  # discard: nothing listens, so a working path answers with an RST
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_setns = _libc.setns
_prctl = _libc.prctl

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_NAME_RE = re.compile(r"^(?P<prefix>[a-z][a-z0-9]{0,11})-(?P<pid>[0-9]+)-(?P<tag>[0-9a-f]{4})-"
                      r"(?P<role>" + "|".join(ROLES) + r")$")


class LabError(RuntimeError):
    """The lab could not be built, used or torn down as asked."""


class LabCommandError(subprocess.CalledProcessError):
    """A command inside a namespace failed; unlike CalledProcessError, str() shows its stderr."""

    def __str__(self) -> str:
        cmd = " ".join(str(part) for part in self.cmd)
        stderr = (self.stderr or "").strip()
        return f"{cmd!r} exited {self.returncode}" + (f": {stderr}" if stderr else "")


# --- process-wide safety net -------------------------------------------------------------------

_LIVE: set[Lab] = set()
_SAVED_HANDLERS: dict[int, Any] = {}
_TERM_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so `with Lab()` blocks and pytest unwind and clean up."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _install_signal_handlers() -> None:
    # Only the main thread may set handlers, and only default ones are replaced: an application
    # that chose its own handling keeps it (and is then responsible for calling down()).
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _TERM_SIGNALS:
        if sig not in _SAVED_HANDLERS and signal.getsignal(sig) is signal.SIG_DFL:
            _SAVED_HANDLERS[sig] = signal.SIG_DFL
            signal.signal(sig, _interrupt)


def _restore_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in list(_SAVED_HANDLERS.items()):
        if signal.getsignal(sig) is _interrupt:
            signal.signal(sig, handler)
        del _SAVED_HANDLERS[sig]


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while tearing down, so a second Ctrl-C cannot leave half a lab.

    The signal is delivered (and KeyboardInterrupt raised) as soon as teardown is complete.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *_TERM_SIGNALS})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _down_all() -> None:
    """atexit: tear down every lab still up (a test runner that exits without teardown)."""
    for lab in list(_LIVE):
        try:
            lab.down()
        except BaseException as error:
            print(f"lab: teardown of {lab!r} at exit failed: {error}", file=sys.stderr)


atexit.register(_down_all)


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when we die, even if we are SIGKILLed ourselves."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# --- namespaces and processes ------------------------------------------------------------------

def _ns_id(path: str) -> tuple[int, int]:
    """The identity of a network namespace (device and inode of its nsfs file)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _pid_state(pid: int) -> str | None:
    """The one-letter state of a process ("Z" for a zombie), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pids_in_namespaces(ns_ids: Iterable[tuple[int, int]]) -> list[int]:
    """Every live process whose network namespace is one of `ns_ids` (zombies excluded)."""
    wanted = set(ns_ids)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _ns_id(f"/proc/{entry}/ns/net") in wanted:
                found.append(int(entry))
        except OSError:
            continue  # gone, a zombie, or a kernel thread
    return found


def _kill_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _kill_namespace_processes(
    ns_ids: Sequence[tuple[int, int]], children: Sequence[subprocess.Popen[Any]], grace: float = 2.0
) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, every process living in the namespaces.

    `children` are our own Popen objects: their process groups are signalled too (a helper that
    left the namespace would otherwise survive) and they are reaped so no zombie stays behind.
    """
    def remaining() -> list[int]:
        for child in children:
            child.poll()
        alive = [child.pid for child in children if child.returncode is None]
        return sorted(set(alive) | set(pids_in_namespaces(ns_ids)))

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        for child in children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, sig)
        _kill_all(pids_in_namespaces(ns_ids), sig)
        deadline = time.monotonic() + wait
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not remaining():
            break
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    left = remaining()
    if left:
        raise LabError(f"processes {left} survived SIGKILL inside the lab namespaces")


def _delete_namespaces(names: Iterable[str]) -> None:
    existing = [name for name in names if os.path.exists(f"{NETNS_DIR}/{name}")]
    if not existing:
        return
    script = "".join(f"netns del {name}\n" for name in existing)
    subprocess.run(["ip", "-force", "-batch", "-"], input=script.encode(), capture_output=True,
                   check=False, timeout=30)
    left = [name for name in existing if os.path.exists(f"{NETNS_DIR}/{name}")]
    if left:
        raise LabError(f"could not delete network namespaces {left}")


def lab_namespaces(prefix: str | None = None) -> list[str]:
    """Names of existing namespaces made by a Lab (optionally with this prefix), any owner."""
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []
    return [name for name in names if (m := _NAME_RE.match(name))
            and (prefix is None or m["prefix"] == prefix)]


def cleanup_stale(prefix: str | None = None) -> list[str]:
    """Remove namespaces of labs whose owner process is dead (killed with SIGKILL, power cut...).

    A lab's namespaces are named PREFIX-PID-TAG-ROLE. A lab counts as stale only if its owner
    PID is gone *and* no process lives in any of its namespaces (a dead owner's servers died with
    it through PR_SET_PDEATHSIG): a lab owned by a process of another PID namespace, whose PID
    means nothing here, is left alone as long as anything runs in it. Never called implicitly.
    Returns the names removed.
    """
    labs: dict[str, list[str]] = {}
    for name in lab_namespaces(prefix):
        m = _NAME_RE.match(name)
        assert m is not None
        labs.setdefault(f"{m['prefix']}-{m['pid']}-{m['tag']}", []).append(name)
    stale: list[str] = []
    for stem, names in labs.items():
        state = _pid_state(int(stem.split("-")[1]))
        if state is not None and state != "Z":
            continue
        ids = []
        for name in names:
            with contextlib.suppress(OSError):
                ids.append(_ns_id(f"{NETNS_DIR}/{name}"))
        if pids_in_namespaces(ids):
            continue
        _delete_namespaces(names)
        stale += names
    return stale


def _socket_in_netns(path: str, family: int, kind: int) -> socket.socket:
    """Create a socket inside the namespace at `path`, from a throw-away thread.

    setns(2) with CLONE_NEWNET moves only the calling thread; a socket belongs for life to the
    namespace it was created in, so the caller can use it from any thread afterwards. The thread
    verifies its namespace before creating the socket and is never reused.
    """
    box: dict[str, Any] = {}

    def enter_and_create() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns({path}): {os.strerror(code)}")
                here = os.stat("/proc/thread-self/ns/net")
                there = os.fstat(fd)
                if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
                    raise LabError(f"setns({path}) did not move the thread; refusing to probe")
                box["socket"] = socket.socket(family, kind)
            finally:
                os.close(fd)
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=enter_and_create, name="lab-setns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    sock: socket.socket = box["socket"]
    return sock


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _close_hard(sock: socket.socket) -> None:
    """Close with RST (linger 0): no FIN_WAIT/TIME_WAIT keeps a deleted namespace alive."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- the held connection -----------------------------------------------------------------------

class HeldConnection:
    """A long-lived TCP connection to an echo server, opened from inside a lab namespace.

    It exists to prove that isolation cuts *established* connections too (docs/design.md §8): open
    it before the cut, check `alive()`, apply the cut, check `not alive()`. The socket lives in the
    source namespace (created there by setns), so its packets take the same path as any client's.
    """

    def __init__(self, sock: socket.socket, description: str) -> None:
        self._sock: socket.socket | None = sock
        self.description = description
        self._seq = 0
        self._pending = b""

    def alive(self, timeout: float = 1.0) -> bool:
        """Send a short token and wait for its echo: True only if the path works both ways now.

        Every call sends a distinct token, so an echo that arrives late (after a cut was lifted
        and TCP retransmitted) is recognised as an old one rather than taken for the new answer.
        """
        if self._sock is None:
            return False
        self._seq += 1
        token = b"<lab-%d>" % self._seq
        deadline = time.monotonic() + timeout
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(token)
            while token not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._sock.settimeout(left)
                chunk = self._sock.recv(4096)
                if not chunk:
                    return False  # the peer closed it
                self._pending += chunk
        except OSError:  # timeout, reset, unreachable
            return False
        self._pending = self._pending.split(token, 1)[1]
        return True

    @property
    def closed(self) -> bool:
        """True once closed here or by the lab's teardown."""
        return self._sock is None or self._sock.fileno() == -1

    def close(self) -> None:
        """Reset the connection (idempotent)."""
        if self._sock is not None:
            _close_hard(self._sock)
            self._sock = None

    def __enter__(self) -> HeldConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HeldConnection {self.description}{' closed' if self.closed else ''}>"


# --- the lab -----------------------------------------------------------------------------------

class Lab:
    """Namespaces gw (router), lan1, lan2, mgmt (clients) and wan (the internet), see README.md.

    Use as a context manager (`with Lab() as lab:`), or call `up()` and `down()`; `down()` is
    idempotent and also runs at exit. A Lab is built once: after `down()` make a new one.

    Attributes (filled at construction, valid once `up()` returns):
      ns     role -> namespace name ("gw", "lan1", "lan2", "mgmt", "wan")
      addr   named addresses; IPv6 variants are the name + "6" ("site" / "site6")
      net    named prefixes (management network, peer network, bad prefix...)
      gw_if  role -> gw's interface towards it ({"lan1": "lan0", "lan2": "lan1", ...})
    """

    def __init__(self, prefix: str = "bla", *, servers: bool = True) -> None:
        if not _PREFIX_RE.match(prefix):
            raise LabError(f"lab prefix {prefix!r} must match {_PREFIX_RE.pattern}")
        self.prefix = prefix
        self.tag = secrets.token_hex(2)
        # The PID in the name tells `cleanup_stale` whether the owner is still alive.
        self.ns: dict[str, str] = {role: f"{prefix}-{os.getpid()}-{self.tag}-{role}"
                                   for role in ROLES}
        self.addr: dict[str, str] = topology.addresses()
        self.net: dict[str, str] = dict(topology.NETS)
        self.gw_if: dict[str, str] = dict(topology.GW_IF)
        self._with_servers = servers
        self._state: Literal["new", "up", "down"] = "new"
        self._created: list[str] = []
        self._ns_ids: dict[str, tuple[int, int]] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<Lab {self.prefix}-{os.getpid()}-{self.tag} {self._state}>"

    # context manager

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    # lifecycle

    @property
    def is_up(self) -> bool:
        return self._state == "up"

    def up(self) -> None:
        """Create the namespaces, links, addresses, routes and servers (about half a second).

        On any failure (or Ctrl-C) part way, everything already created is removed again.
        """
        if self._state == "up":
            return
        if self._state == "down":
            raise LabError("this Lab has been torn down; create a new Lab")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces); run the tests as root")
        _LIVE.add(self)
        _install_signal_handlers()
        self._state = "up"
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Kill every process in the lab's namespaces, close our sockets, delete the namespaces.

        Idempotent. Every step runs even if an earlier one failed; the first error is raised at
        the end. Ctrl-C and SIGTERM are held until teardown is complete.
        """
        if self._state != "up":
            return
        errors: list[BaseException] = []
        with _signals_deferred():
            for step in (self._close_sockets, self._stop_processes, self._delete_namespaces):
                try:
                    step()
                except BaseException as error:
                    errors.append(error)
            self._state = "down"
            _LIVE.discard(self)
            if not _LIVE:
                _restore_signal_handlers()
        if errors:
            raise errors[0]

    def _close_sockets(self) -> None:
        for sock in list(self._sockets):
            _close_hard(sock)

    def _stop_processes(self) -> None:
        _kill_namespace_processes(list(self._ns_ids.values()), self._procs)
        self._procs.clear()

    def _delete_namespaces(self) -> None:
        _delete_namespaces(self._created)

    def _build(self) -> None:
        existing = [name for name in self.ns.values() if os.path.exists(f"{NETNS_DIR}/{name}")]
        if existing:
            raise LabError(f"namespaces {existing} already exist; refusing to reuse them")
        # Recorded before creation: if `ip` fails half way, down() deletes what it did create.
        self._created = list(self.ns.values())
        self._ip_batch(None, "".join(f"netns add {self.ns[role]}\n" for role in ROLES))
        self._ns_ids = {role: _ns_id(f"{NETNS_DIR}/{self.ns[role]}") for role in ROLES}

        # Sysctls first, so interfaces created afterwards inherit "default": no IPv6 duplicate
        # address detection (addresses usable at once, no 1-2 s wait), and gw forwards.
        sysctls = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
        forwarding = ["net.ipv4.ip_forward=1", "net.ipv6.conf.default.forwarding=1",
                      "net.ipv6.conf.all.forwarding=1"]
        self._parallel([
            (["ip", "netns", "exec", self.ns[role], "sysctl", "-q", "-w", *sysctls,
              *(forwarding if role == "gw" else [])], None)
            for role in ROLES
        ])

        gw = ["link set lo up"]
        for link in LINKS:
            gw += [
                f"link add {link.gw_if} type veth"
                f" peer name {link.peer_if} netns {self.ns[link.peer]}",
                f"addr add {link.gw4} dev {link.gw_if}",
                f"addr add {link.gw6} dev {link.gw_if} nodad",
                f"link set {link.gw_if} up",
            ]
        wan_link = LINKS[-1]
        gw += [f"route add default via {wan_link.peer4.split('/')[0]}",
               f"route add default via {wan_link.peer6.split('/')[0]}"]
        self._ip_batch("gw", "\n".join(gw) + "\n")

        batches = []
        for link in LINKS:
            cmds = ["link set lo up",
                    f"addr add {link.peer4} dev {link.peer_if}",
                    f"addr add {link.peer6} dev {link.peer_if} nodad",
                    f"link set {link.peer_if} up"]
            gw4, gw6 = link.gw4.split("/")[0], link.gw6.split("/")[0]
            if link.peer == "wan":
                for v4, v6 in WAN_HOSTS.values():
                    cmds += [f"addr add {v4}/32 dev lo", f"addr add {v6}/128 dev lo nodad"]
                cmds += [f"route add local {prefix} dev lo" for prefix in WAN_ANYIP]
                cmds += [f"route add {self.net['internal']} via {gw4}",
                         f"route add {self.net['internal6']} via {gw6}"]
            else:
                cmds += [f"route add default via {gw4}", f"route add default via {gw6}"]
            batches.append((["ip", "-n", self.ns[link.peer], "-batch", "-"],
                            "\n".join(cmds) + "\n"))
        self._parallel(batches)
        self._wait_links_ready()

        if self._with_servers:
            listens = [("http", "*", HTTP_PORT), ("echo", "*", ECHO_PORT)]
            procs = [self._spawn_server(role, listens) for role in ROLES]
            for proc in procs:
                self._wait_ready(proc)

    def _wait_links_ready(self, timeout: float = 5.0) -> None:
        """Return once every link carries packets both ways, v4 and v6.

        Measured: a first IPv6 SYN from ns wan to lan1 sent right after bring-up was lost and
        only its retransmission got through, one second later, while the opposite direction
        worked at once. A test would then see a 1 s "timeout" that is not a firewall drop. So
        each end connects to the other on a closed port: an RST back ("refused") proves the
        round trip, needs no server and leaves the neighbour caches filled on both sides.
        """
        pending = []
        for link in LINKS:
            for gw_cidr, peer_cidr in ((link.gw4, link.peer4), (link.gw6, link.peer6)):
                pending += [("gw", peer_cidr.split("/")[0]), (link.peer, gw_cidr.split("/")[0])]
        deadline = time.monotonic() + timeout
        while pending:
            pending = [(src, dst) for src, dst in pending
                       if self.probe(src, dst, _READY_PORT, timeout=0.1) not in ("connected",
                                                                                "refused")]
            if pending and time.monotonic() > deadline:
                raise LabError(f"links not ready after {timeout} s: {pending}")

    def _ip_batch(self, role: str | None, script: str) -> None:
        argv = ["ip", "-batch", "-"] if role is None else ["ip", "-n", self.ns[role], "-batch", "-"]
        self._parallel([(argv, script)])

    @staticmethod
    def _parallel(jobs: Sequence[tuple[list[str], str | None]]) -> None:
        """Run short set-up commands at the same time (bring-up speed is test-suite speed)."""
        procs = [(argv, subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE))
                 for argv, _ in jobs]
        failures = []
        for (argv, proc), (_, script) in zip(procs, jobs, strict=True):
            out, err = proc.communicate(script.encode() if script else None, timeout=60)
            if proc.returncode:
                failures.append(LabCommandError(proc.returncode, argv, out.decode(errors="replace"),
                                                err.decode(errors="replace")))
        if failures:
            raise failures[0]

    def _role_ns(self, role: str) -> str:
        if self._state != "up":
            raise LabError(f"{self!r} is not up")
        try:
            return self.ns[role]
        except KeyError:
            raise LabError(f"no lab namespace with role {role!r} (roles: {', '.join(ROLES)})") \
                from None

    # commands and processes

    def run(self, role: str, *cmd: str, check: bool = True, input: str | bytes | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside a namespace (`ip netns exec`) and capture its output as text.

        With check=True a non-zero exit raises LabCommandError, whose message includes stderr.
        """
        argv = ["ip", "netns", "exec", self._role_ns(role), *cmd]
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)
        result = subprocess.CompletedProcess(argv, proc.returncode,
                                             proc.stdout.decode(errors="replace"),
                                             proc.stderr.decode(errors="replace"))
        if check and result.returncode:
            raise LabCommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def nft(self, role: str, script: str) -> subprocess.CompletedProcess[str]:
        """Load an nft script (`nft -f -`) inside a namespace: one atomic transaction."""
        return self.run(role, "nft", "-f", "-", input=script)

    def spawn(self, role: str, *cmd: str, **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a background process inside a namespace; `down()` kills it (and its group).

        It runs in its own session (Ctrl-C in the terminal reaches us, not it, so teardown stays
        in order) and dies with this process even if we are killed with SIGKILL.
        """
        argv = ["ip", "netns", "exec", self._role_ns(role), *cmd]
        popen_kwargs.setdefault("start_new_session", True)
        popen_kwargs.setdefault("preexec_fn", _die_with_parent)
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, **popen_kwargs)
        self._procs.append(proc)
        return proc

    def _spawn_server(self, role: str, listens: Sequence[tuple[str, str, int]]) -> \
            subprocess.Popen[bytes]:
        args = [arg for kind, addr, port in listens
                for arg in ("--listen", f"{kind},{addr},{port}")]
        proc: subprocess.Popen[bytes] = self.spawn(
            role, sys.executable, "-I", "-S", SERVER_SCRIPT, "--name", role, *args,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        return proc

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """Block until a server printed "ready" (it listens), or fail with its exit status."""
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise LabError(f"server {proc.args!r} not ready after {timeout} s")
        line = proc.stdout.readline()
        proc.stdout.close()
        if line.strip() != b"ready":
            proc.wait(timeout=5)
            raise LabError(f"server {proc.args!r} failed to start (exit {proc.returncode})")

    def serve_tcp(self, role: str, addr: str, port: int,
                  kind: Literal["http", "echo"] | None = None) -> subprocess.Popen[bytes]:
        """Start one more server inside a namespace, listening once this returns.

        kind defaults to "http" (answers "ok") for ports 80, 443 and 8080, else "echo". addr may
        be "*" for every address. Ports 80 and 7007 are already served on every address of every
        namespace (unless Lab(servers=False)). Kill the returned process to stop it early.
        """
        if kind is None:
            kind = "http" if port in (80, 443, 8080) else "echo"
        proc = self._spawn_server(role, [(kind, addr, port)])
        self._wait_ready(proc)
        return proc

    # probes

    def make_socket(self, role: str, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket created inside a namespace, usable from this process; closed by `down()`."""
        sock = _socket_in_netns(f"{NETNS_DIR}/{self._role_ns(role)}", family, kind)
        self._sockets.add(sock)
        return sock

    def _connect(self, src_role: str, dst: str, port: int, timeout: float,
                 src_addr: str | None) -> socket.socket:
        sock = self.make_socket(src_role, _family(dst))
        try:
            if src_addr is not None:
                sock.bind((src_addr, 0))
            sock.settimeout(timeout)
            sock.connect((dst, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def probe(self, src_role: str, dst: str, port: int, timeout: float = 1.0,
              src_addr: str | None = None) -> str:
        """Try a TCP connection from inside `src_role`; say what happened.

        Returns "connected", "timeout" (dropped), "refused" (RST: a reject rule or no server),
        "unreachable" (ICMP unreachable: a reject rule or no route), or another errno name.
        `src_addr` binds the source (e.g. from ns wan, a c2 address, to test inbound blocks).
        """
        try:
            sock = self._connect(src_role, dst, port, timeout, src_addr)
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError as error:
            if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "unreachable"
            return errno.errorcode.get(error.errno or 0, str(error))
        sock.close()
        return "connected"

    def tcp_probe(self, src_role: str, dst: str, port: int, timeout: float = 1.0,
                  src_addr: str | None = None) -> bool:
        """True if a TCP connection from inside `src_role` to dst:port is established."""
        return self.probe(src_role, dst, port, timeout, src_addr) == "connected"

    def open_connection(self, src_role: str, dst: str, port: int = ECHO_PORT,
                        timeout: float = 2.0, src_addr: str | None = None) -> HeldConnection:
        """Open a HeldConnection to an echo server; raises LabError if it cannot connect."""
        try:
            sock = self._connect(src_role, dst, port, timeout, src_addr)
        except OSError as error:
            raise LabError(f"cannot connect from {src_role} to {dst} port {port}: {error}") \
                from error
        conn = HeldConnection(sock, f"{src_role} -> {_url_host(dst)}:{port}")
        if not conn.alive(timeout):
            conn.close()
            raise LabError(f"{conn.description}: connected but no echo (is it an echo server?)")
        return conn

    def http_get(self, src_role: str, dst: str, port: int = HTTP_PORT, path: str = "/",
                 timeout: float = 2.0) -> str | None:
        """GET with a real client (curl) from inside `src_role`; the body, or None on failure.

        curl runs with -q (no ~/.curlrc) and --noproxy '*' so a proxy set in the environment can
        never send the request anywhere but the lab address.
        """
        url = f"http://{_url_host(dst)}:{port}{path}"
        result = self.run(src_role, "curl", "-q", "-sS", "-g", "--noproxy", "*",
                          "--max-time", str(timeout), url, check=False, timeout=timeout + 10)
        return result.stdout if result.returncode == 0 else None

    # introspection

    def pids(self) -> list[int]:
        """PIDs of every process now living in the lab's namespaces (servers included)."""
        return pids_in_namespaces(self._ns_ids.values())

    def namespace_ids(self) -> dict[str, tuple[int, int]]:
        """role -> (device, inode) of its namespace, to recognise it after its name is gone."""
        return dict(self._ns_ids)

    def describe(self) -> str:
        """A human-readable summary: namespaces, gw interfaces, addresses, prefixes."""
        lines = ["namespaces:"]
        lines += [f"  {role:<5} {name}" for role, name in self.ns.items()]
        lines.append("gw interfaces:")
        lines += [f"  {ifname:<6} -> ns {role}" for role, ifname in self.gw_if.items()]
        lines.append("addresses:")
        names = [name for name in self.addr if not name.endswith("6") or name[:-1] not in self.addr]
        lines += [f"  {name:<16} {self.addr[name]:<15} {self.addr.get(name + '6', '')}"
                  for name in names]
        lines.append("prefixes:")
        lines += [f"  {name:<16} {value}" for name, value in self.net.items()]
        lines.append(f"servers: HTTP 'ok' on port {HTTP_PORT}, TCP echo on port {ECHO_PORT}, "
                     "in every namespace, on every address")
        return "\n".join(lines)
