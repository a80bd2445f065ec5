"""How much of the public address space real lists block: the figures behind the default of
`guards.max_address_share` (docs/design.md §5).

    python3 bench/address_share.py [--format F] [--min-prefix-v6 N] [--minus BOGONS] LIST...

Each LIST is parsed as the agent parses a feed (`--format`, default auto), passed through the
default guards (special ranges, /8 and /32 minimum prefixes) and merged; `--minus FILE` first
drops the entries that lie wholly inside FILE's prefixes (e.g. fullbogons, to measure
firehol_level1 without its bogons). Prints one JSON line per list. The lists are public data
fetched by whoever measures; none is shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.coverage import blocklist_share
from agent.formats import parse
from agent.guards import Policy
from agent.merge import merge
from agent.netrange import family_of, span, spans, subtract
from agent.psl import default


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lists", nargs="+", type=Path)
    ap.add_argument("--format", default="auto")
    ap.add_argument("--min-prefix-v6", type=int, default=32)
    ap.add_argument("--minus", type=Path, help="drop entries inside this file's prefixes")
    args = ap.parse_args(argv)
    policy = Policy.build(psl=default(), min_prefix_v6=args.min_prefix_v6)
    holes: dict[int, list[tuple[int, int]]] = {}
    if args.minus:
        values = [i.value for i in parse(args.minus.read_bytes(), "plain").indicators]
        for fam in {family_of(v) for v in values}:
            holes[fam] = spans([v for v in values if family_of(v) == fam], fam)
    for path in args.lists:
        parsed = parse(path.read_bytes(), args.format)
        inds = parsed.indicators
        if holes:
            inds = tuple(i for i in inds if i.type == "domain" or subtract(
                [span(i.value, family_of(i.value))], holes.get(family_of(i.value), [])))
        guarded = policy.check(inds)
        share = blocklist_share(merge([guarded.accepted]))
        print(json.dumps({"list": path.name, "entries": len(parsed.indicators),
                          "kept": len(inds), "accepted": len(guarded.accepted),
                          "refused": guarded.counts(), "share_v4": round(share.v4, 6),
                          "share_v6": round(share.v6, 9)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
