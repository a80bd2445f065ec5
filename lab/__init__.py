"""A network-namespace lab for the tests, the demo and the benchmarks (docs/design.md §9).

`Lab` builds five namespaces (gw, lan1, lan2, mgmt, wan) wired like a hospital gateway and removes
them again; see lab/README.md for the topology and the address table. `lab.httpserver` holds the
loopback HTTP(S) servers and throw-away CA that the unit tests and the demo share. Nothing here is
part of the agent: it is never packaged, the agent never imports it, and it imports no test.
"""

from lab.core import (
    HeldConnection,
    Lab,
    LabCommandError,
    LabError,
    cleanup_stale,
    lab_namespaces,
    pids_in_namespaces,
)
from lab.topology import ECHO_PORT, HTTP_PORT, ROLES

__all__ = [
    "ECHO_PORT",
    "HTTP_PORT",
    "ROLES",
    "HeldConnection",
    "Lab",
    "LabCommandError",
    "LabError",
    "cleanup_stale",
    "lab_namespaces",
    "pids_in_namespaces",
]
