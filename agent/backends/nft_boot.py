"""enforced.nft in parts, so that keeping the boot file current costs what a sync changed.

enforced.nft is loaded by plain `nft -f` at boot; with a million elements it is 12 MB, and
rendering and writing it whole after every commit cost more than the commit of a 1 % change.
When the blocklist is the applied record's base plus a difference (agent.ledger), the file is
the table without elements, then

    include "STATE/boot/base-HASH.nft"    the hash sets (v4, v6) of that base, written once
    include "STATE/boot/delta-HASH.nft"   the difference from it (delete, then add), and the
                                          interval sets (prefixes, a few thousand) whole

and, as before, isolation.nft. `nft -f` reads includes into the same single transaction, so the
boot path is unchanged: all of it loads or none of it. Each part is named by the hash of its
content and written before enforced.nft names it; the parts the previous enforced.nft named are
removed only after it was replaced. Anything else (a first sync, a state directory whose path
nft cannot quote) gets the whole table inline, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from agent.config import FirewallConfig
from agent.ledger import LazyBlocklist
from agent.merge import Blocklist
from agent.render.common import BLOCK_SETS
from agent.render.nft_blocklist import render_elements, render_table, rooms_for
from agent.state import StateStore
from agent.state.applied import BaseFile


def _quoted(path: str) -> str | None:
    if any(c in path for c in '"\\\n') or not path.startswith("/"):
        return None
    return f'include "{path}"\n'


def boot_table(fw: FirewallConfig, blocklist: Blocklist, store: StateStore,
               rooms: Mapping[str, int] | None = None) -> tuple[str, list[str], str]:
    """(the table for enforced.nft, the parts it includes: keep them, sweep the others, and
    what `nft -c` checks before enforced.nft is replaced).

    The check is the table without elements, inline or in parts. The elements inline are the
    ones the commit that has the file written loaded, from the same renderer (or the record's,
    loaded so by the commit that made it): checking them again was a second load of a million
    elements on the other core during a first sync. In parts, every part holds what the kernel
    holds after the commit that had it written, rendered by the same renderer: the base and the
    difference the hash sets' elements the kernel accepted in the commits that made them, the
    prefix part the interval sets this commit left (refilled whole when they change). Checking
    them again would cost a load of their elements (a million: a whole load; 10k prefixes:
    0.2 s). Each part's sha256 is recorded with the boot files (TableWriter), so damage is
    seen, and a damaged part is removed and written again."""
    base = blocklist.base_loader() if isinstance(blocklist, LazyBlocklist) else None
    skeleton = render_table(fw, Blocklist(), rooms=rooms_for(blocklist, rooms))
    if not isinstance(base, BaseFile) or _quoted(str(store.boot_parts.path("x"))) is None:
        return render_table(fw, blocklist, rooms=rooms), [], skeleton
    assert isinstance(blocklist, LazyBlocklist)
    tag = hashlib.sha256(f"{fw.table}\n{base.sha256}".encode()).hexdigest()[:32]
    base_name = f"base-{tag}.nft"
    if not store.boot_parts.path(base_name).is_file():
        blobs = base()
        lines = [f"# blocklist-agent: elements of base {base.sha256}\n"]
        for name, _, interval, _ in BLOCK_SETS:
            blob = "" if interval else blobs.get(name, "")
            if blob:
                lines.append(render_elements(fw, name, blob.split("\n")))
        store.boot_parts.save(base_name, "".join(lines))
    delta = blocklist.delta
    nets = ["# blocklist-agent: the prefix sets\n"]
    changes = ["# blocklist-agent: the difference from the base\n"]
    added = []
    for name, _, interval, _ in BLOCK_SETS:
        if interval:  # whole: nft refuses an interval added and deleted in one transaction
            nets.append(render_elements(fw, name, sorted(getattr(blocklist, name))))
        else:
            changes.append(render_elements(fw, name, sorted(delta.removed.get(name, ())),
                                           "delete"))
            added.append(render_elements(fw, name, sorted(delta.added.get(name, ()))))
    changes.extend(added)
    names = [base_name]
    for kind, text in (("nets", "".join(nets)), ("delta", "".join(changes))):
        name = f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}.nft"
        if not store.boot_parts.path(name).is_file():
            store.boot_parts.save(name, text)
        names.append(name)
    includes = "".join(str(_quoted(str(store.boot_parts.path(n)))) for n in names)
    return skeleton + includes, names, skeleton
