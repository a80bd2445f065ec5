"""Every parser against 1 MB of hostile input: linear time, whatever a feed sends.

One command, JSON out: for each parser, the time of its worst adversarial payload (one 1 MB line
or object: escaped quotes, deep nesting, long labels, many columns, an unclosed string...), the
time of a 1 MB benign payload of the same format, and their ratio. A regex that backtracks, a
quadratic rescan or a recursion would show as seconds here; the target is under 1 s each.

    .venv/bin/python bench/parse_adversarial.py [--size BYTES] [--repeat N]

Exit status 1 when a payload takes 1 s or more, or raises anything but a FormatError.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.errors import FormatError, VerifyError
from agent.formats import parse
from agent.verify.manifest import parse_manifest

LIMIT_S = 1.0
Maker = Callable[[int], bytes]

ABUSECH = {
    "feodo-csv": '# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n',
    "threatfox-csv": ('# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type",'
                      '"fk_malware","malware_alias","malware_printable","last_seen_utc",'
                      '"confidence_level","reference","tags","anonymous","reporter"\n'),
    "urlhaus-csv": "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n",
    "misp-csv": "uuid,event_id,category,type,value,comment,to_ids,date\n",
}
ZONE = "$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n  NS localhost.\n"


def fill(unit: str, size: int, head: str = "", tail: str = "") -> bytes:
    """`head` + `unit` repeated to about `size` bytes + `tail`."""
    count = max(1, (size - len(head) - len(tail)) // max(1, len(unit)))
    return (head + unit * count + tail).encode()


def lines(make: Callable[[int], str], size: int, head: str = "") -> bytes:
    out, total, n = [head], len(head), 0
    while total < size:
        line = make(n) + "\n"
        out.append(line)
        total += len(line)
        n += 1
    return "".join(out).encode()


def ip(n: int) -> str:
    return f"{45 + n % 150}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def misp_event(value: str) -> str:
    return ('{"Event": {"uuid": "e1", "Attribute": [{"uuid": "a1", "type": "url", "to_ids": true, '
            f'"value": "{value}"}}]}}}}')


def stix_bundle(pattern: str) -> str:
    return ('{"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator", '
            f'"id": "indicator--1", "pattern_type": "stix", "pattern": "{pattern}"}}]}}')


def csv_cases(head: str) -> dict[str, Maker]:
    """The hostile rows of a CSV format, under its header line."""
    def quoted(size: int) -> bytes:
        return fill('""', size, head=head + '"', tail='"\n')

    def columns(size: int) -> bytes:
        return fill(",", size, head=head)

    def unclosed(size: int) -> bytes:
        return fill("a", size, head=head + '"')

    return {"quoted field of escaped quotes": quoted, "many columns": columns,
            "unclosed quote": unclosed}


ADVERSARIAL: dict[str, dict[str, Maker]] = {
    "plain": {
        "long label": lambda s: fill("a", s),
        "many labels": lambda s: fill("a.", s, tail="example"),
        "many columns": lambda s: fill(" 7", s, head="192.0.2.1"),
        "glued comment marks": lambda s: fill("a#;", s),
        "escaped quotes": lambda s: fill('\\"', s, head='"'),
        "url": lambda s: fill("a/", s, head="http://evil.example/"),
        "non-ascii label": lambda s: fill("é", s),
    },
    "hosts": {
        "many names": lambda s: fill(" x.example", s, head="0.0.0.0"),
        "long name": lambda s: fill("a", s, head="0.0.0.0 "),
        "glued comment marks": lambda s: fill("#a", s, head="0.0.0.0 a"),
    },
    "spamhaus-drop": {
        "long prefix length": lambda s: fill("9", s, head="192.0.2.0/"),
        "long comment": lambda s: fill(";SBL", s, head="192.0.2.0/24 "),
    },
    "spamhaus-json": {
        "deep nesting": lambda s: fill("[", s),
        "escaped quotes": lambda s: fill('\\"', s, head='{"cidr": "', tail='"}\n'),
        "long number": lambda s: fill("1", s, head='{"cidr": '),
        "many members": lambda s: fill('"a": 1, ', s, head="{", tail='"cidr": "1.2.3.0/24"}\n'),
    },
    **{fmt: csv_cases(head) for fmt, head in ABUSECH.items()},
    "misp-json": {
        "deep nesting": lambda s: fill("[", s),
        "deep nesting, closed": lambda s: fill("[", s // 2) + fill("]", s // 2),
        "escaped quotes in a value": lambda s: misp_event('\\"' * (s // 2)).encode(),
        "long value": lambda s: misp_event("http://" + "a" * s).encode(),
    },
    "misp-attributes": {
        "deep nesting": lambda s: fill("[", s),
        "deep values": lambda s: (b'{"response": {"Attribute": [' + b",".join(
            [b'{"type": "ip-dst", "uuid": "u", "value": ' + b"[" * 500 + b"1" + b"]" * 500
             + b"}"] * (s // 1100)) + b"]}}"),
        "escaped quotes in a value": lambda s: (
            '{"response": {"Attribute": [{"type": "url", "uuid": "u", "value": "'
            + '\\"' * (s // 2) + '"}]}}').encode(),
    },
    "misp-warninglist": {
        "deep nesting": lambda s: fill("[", s),
        "deep entries": lambda s: (b'{"name": "x", "type": "string", "list": [' + b",".join(
            [b"[" * 500 + b"1" + b"]" * 500] * (s // 1001)) + b"]}"),
        "long entry": lambda s: ('{"name": "x", "type": "hostname", "list": ["'
                                 + "a." * (s // 2) + 'x"]}').encode(),
    },
    "stix2": {
        "deep nesting": lambda s: fill("{\"a\":", s),
        "escaped quotes in a pattern": lambda s: stix_bundle(
            "[url:value = '" + "\\\\'" * (s // 3)).encode(),
        "many comparisons": lambda s: stix_bundle(
            "[" + " OR ".join(["domain-name:value = 'a.example'"] * (s // 36)) + "]").encode(),
        "long path": lambda s: stix_bundle("[a:" + "b." * (s // 2) + "c = 'x']").encode(),
        "many comparisons, under the 128 KiB cap": lambda s: stix_bundle(
            "[" + " OR ".join(["domain-name:value = 'a.example'"] * 3600) + "]").encode(),
    },
    "rpz": {
        "escaped quotes, unclosed": lambda s: fill('\\"', s, head=ZONE + 'x TXT "'),
        "escaped quotes, closed": lambda s: fill('\\"', s, head=ZONE + 'x TXT "', tail='"\n'),
        "many quoted strings": lambda s: fill('"a" ', s, head=ZONE + "x TXT "),
        "open parentheses": lambda s: fill("(", s, head=ZONE + "x CNAME "),
        "many labels": lambda s: fill("a.", s, head=ZONE, tail="x CNAME .\n"),
        "many tokens": lambda s: fill(" 300", s, head=ZONE + "x", tail=" CNAME .\n"),
        "escapes": lambda s: fill("\\;", s, head=ZONE),
    },
    "auto": {
        "deep nesting": lambda s: fill("[", s),
        "one long line": lambda s: fill("a", s),
    },
}

BENIGN: dict[str, Maker] = {
    "plain": lambda s: lines(lambda n: ip(n) if n % 2 else f"host{n}.example{n % 97}.com", s),
    "hosts": lambda s: lines(lambda n: f"0.0.0.0 ads{n}.tracker{n % 89}.example", s),
    "spamhaus-drop": lambda s: lines(lambda n: f"{ip(n)[:-2]}.0/24 ; SBL{n}", s),
    "spamhaus-json": lambda s: lines(
        lambda n: json.dumps({"cidr": f"{ip(n)}/32", "sblid": f"SBL{n}", "rir": "ripencc"}), s),
    "feodo-csv": lambda s: lines(
        lambda n: f'"2024-05-01 00:00:00","{ip(n)}","443","online","2024-05-01","QakBot"', s,
        ABUSECH["feodo-csv"]),
    "threatfox-csv": lambda s: lines(
        lambda n: (f'"2024-05-01 00:00:00", "{n}", "c2-{n}.example", "domain", "botnet_cc", '
                   f'"win.x", "None", "X", "", "75", "", "x", "0", "abuse_ch"'), s,
        ABUSECH["threatfox-csv"]),
    "urlhaus-csv": lambda s: lines(
        lambda n: (f'"{n}","2024-05-01 00:00:00","http://dl{n}.example/x.exe","online","",'
                   f'"malware_download","exe","https://urlhaus.abuse.ch/url/{n}/","x"'), s,
        ABUSECH["urlhaus-csv"]),
    "misp-csv": lambda s: lines(
        lambda n: f'{n},1,Network activity,ip-dst,"{ip(n)}","",1,20240501', s,
        ABUSECH["misp-csv"]),
    "misp-json": lambda s: json.dumps({"Event": {"uuid": "e1", "Attribute": [
        {"uuid": f"a{n}", "type": "ip-dst", "to_ids": True, "value": ip(n)}
        for n in range(s // 80)]}}).encode(),
    "stix2": lambda s: json.dumps({"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "indicator", "id": f"indicator--{n}", "pattern_type": "stix",
         "pattern": f"[ipv4-addr:value = '{ip(n)}']"} for n in range(s // 110)]}).encode(),
    "rpz": lambda s: lines(lambda n: f"c2-{n}.example{n % 91}.com CNAME .", s, ZONE),
    "misp-attributes": lambda s: json.dumps({"response": {"Attribute": [
        {"uuid": f"a{n}", "type": "ip-dst", "to_ids": True, "value": ip(n),
         "Event": {"id": "1", "uuid": "e1", "info": "x"}}
        for n in range(s // 140)]}}).encode(),
    "misp-warninglist": lambda s: json.dumps({"name": "cdn", "type": "cidr", "list": [
        f"{ip(n)}/32" for n in range(s // 20)]}).encode(),
    "auto": lambda s: lines(lambda n: ip(n), s),
}


def timed(run: Callable[[bytes], object], data: bytes, repeat: int,
          typed: type[Exception]) -> tuple[float, str]:
    """(best time in seconds, outcome): "ok", the typed refusal's class name, or the unexpected
    exception (which fails the run)."""
    best, outcome = float("inf"), "ok"
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            run(data)
        except typed:
            outcome = typed.__name__
        except Exception as exc:  # reported, and fails the run
            outcome = f"{type(exc).__name__}: {str(exc)[:80]}"
        best = min(best, time.perf_counter() - start)
    return best, outcome


def case(run: Callable[[bytes], object], data: bytes, repeat: int, typed: type[Exception],
         name: str, failures: list[str], *, limit: float = LIMIT_S) -> dict[str, object]:
    seconds, outcome = timed(run, data, repeat, typed)
    if seconds >= limit or outcome not in ("ok", typed.__name__):
        failures.append(f"{name}: {seconds:.3f}s {outcome}")
    return {"seconds": round(seconds, 4), "bytes": len(data), "outcome": outcome}


def measure(size: int, repeat: int) -> dict[str, object]:
    parsers: dict[str, object] = {}
    failures: list[str] = []
    worst = 0.0
    for fmt, cases in ADVERSARIAL.items():
        def run(data: bytes, fmt: str = fmt) -> object:
            return parse(data, fmt)
        benign_data = BENIGN[fmt](size)
        benign = case(run, benign_data, repeat, FormatError, f"{fmt}: benign", failures,
                      limit=float("inf"))  # the reference: its outcome must be ok, its time is
        # what the adversarial ones are compared with
        results = {name: case(run, make(size), repeat, FormatError, f"{fmt}: {name}", failures)
                   for name, make in cases.items()}
        slowest = max(float(str(r["seconds"])) for r in results.values())
        worst = max(worst, slowest)
        base = float(str(benign["seconds"]))
        parsers[fmt] = {"adversarial": results, "worst_seconds": slowest, "benign": benign,
                        "ratio_worst_to_benign": round(slowest / base, 2) if base else None}
    nested = case(parse_manifest, fill("[", size), repeat, VerifyError, "manifest: deep nesting",
                  failures)
    parsers["manifest"] = {"adversarial": {"deep nesting": nested},
                           "worst_seconds": nested["seconds"]}
    return {"size": size, "limit_seconds": LIMIT_S, "worst_seconds": round(worst, 4),
            "ok": not failures, "failures": failures, "parsers": parsers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="bytes per payload (1 MB)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per payload")
    args = ap.parse_args()
    report = measure(args.size, args.repeat)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
