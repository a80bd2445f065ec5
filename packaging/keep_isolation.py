"""Run by the package's postinst (`python3 -I .../keep_isolation.py`) before the daemon (re)starts: an isolation found in the kernel
is kept, never lifted by an install or an upgrade.

Why it is needed: the daemon's first sync may reload the table whole (the firewall settings of
the new version differ, the record was purged, ...), and a full reload carries the isolation
*intent* (isolation.json). When the kernel cuts the WAN but no record says so (the state was
purged, or break-glass.nft was loaded by hand after a restore), that reload would open the
internet in the middle of an incident. So the cut the kernel holds is recorded as the intent
(by "package install", with the time the kernel has left on it), under the one writer's lock,
with a line in the audit trail, and the operator is told how to lift it.

Prints what it found; exit status 0 whatever happens (a failure to look must not fail the
install; it says so on stderr).
"""

from __future__ import annotations

import sys
from dataclasses import replace

sys.path.insert(0, "/usr/share/blocklist-agent")

CONFIG = "/etc/blocklist-agent/agent.yaml"


def main(config_path: str = CONFIG) -> int:
    from agent import config as config_mod
    from agent.backends.nft_exec import Nft
    from agent.backends.nft_view import KernelView
    from agent.errors import AgentError
    from agent.isolation import record
    from agent.state import StateStore

    try:
        config = config_mod.load(config_path)
    except AgentError as exc:
        print(f"blocklist-agent: cannot read {config_path} ({exc.what}); not checking the "
              "kernel for an isolation", file=sys.stderr)
        return 0
    table = config.firewall.table
    try:
        kernel = KernelView(Nft(timeout=30), table).isolation()
    except AgentError as exc:
        print(f"blocklist-agent: cannot read the kernel ({exc.what})", file=sys.stderr)
        return 0
    if not kernel.wan:
        return 0
    cut = ", ".join(sorted(kernel.wan))
    store = StateStore(config.state_dir)
    now = record.now()
    with store.kernel_lock(60):
        state = record.load(store).live(now)
        if not state.active:
            left = [s for s in kernel.wan.values() if s is not None]
            state = replace(state, active=True, since=now, by="package install",
                            reason="isolation found in the kernel when the package was "
                                   "installed or upgraded",
                            deadline=now + min(left) if left else None)
            record.save(store, state)
            store.append_history({"event": "isolate", "by": "package install",
                                  "reason": state.reason, "wan": sorted(kernel.wan)})
    print(f"blocklist-agent: the gateway is ISOLATED (the kernel cuts {cut}); the install "
          "keeps it.\n  Lift it with: blocklist-agent restore --reason \"...\"")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:2]))
    except Exception as exc:  # never fail the install; say it
        print(f"blocklist-agent: could not check for an isolation in force: {exc}",
              file=sys.stderr)
        sys.exit(0)
