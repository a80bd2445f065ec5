"""abuse.ch CSV exports: Feodo Tracker (C2 addresses), ThreatFox (IOCs) and URLhaus (URLs).

All three are CSV with a commented banner and header (shared reader in `_csv`). Only network
indicators are taken: ThreatFox also lists file hashes, which are skipped without a reject since
they are valid data this agent does not enforce. A URL gives its host: addresses and names are
what the firewall and the resolver can block, not paths.
"""

from __future__ import annotations

from agent.formats._common import DOMAINS, IPS, add, finish, split_lines
from agent.formats._csv import has_columns, read_csv
from agent.indicators import Indicator, ParseResult, Reject
from agent.util.hostport import HostPortError, split_host_port

FEODO_HEADER = has_columns("dst_ip", "c2_status")
THREATFOX_HEADER = has_columns("ioc_value", "ioc_type")
URLHAUS_HEADER = has_columns("url", "url_status")


def parse_feodo(text: str) -> ParseResult:
    """Feodo Tracker `ipblocklist.csv`: the dst_ip column (the port is not used)."""
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    table = read_csv(lines, FEODO_HEADER, "Feodo Tracker CSV", rejects)
    column = table.columns["dst_ip"]
    for ref, row in table.rows:
        add(row[column], ref, indicators, rejects, kinds=IPS, label="dst_ip")
    return finish(indicators, rejects, early)


def parse_threatfox(text: str) -> ParseResult:
    """ThreatFox CSV export: ioc_type ip:port, domain and url; other types are skipped."""
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    table = read_csv(lines, THREATFOX_HEADER, "ThreatFox CSV", rejects)
    value_at, type_at = table.columns["ioc_value"], table.columns["ioc_type"]
    for ref, row in table.rows:
        kind, value = row[type_at].strip().lower(), row[value_at]
        if kind == "ip:port":
            add(_drop_port(value), ref, indicators, rejects, kinds=IPS, label="ip:port value")
        elif kind == "domain":
            add(value, ref, indicators, rejects, kinds=DOMAINS, label="domain value")
        elif kind == "url":
            add(value, ref, indicators, rejects, url=True, label="url value")
    return finish(indicators, rejects, early)


def parse_urlhaus(text: str) -> ParseResult:
    """URLhaus CSV dump: the host of each URL (an address or a name)."""
    lines, early = split_lines(text)
    indicators: list[Indicator] = []
    rejects: list[Reject] = []
    table = read_csv(lines, URLHAUS_HEADER, "URLhaus CSV", rejects)
    column = table.columns["url"]
    for ref, row in table.rows:
        add(row[column], ref, indicators, rejects, url=True, label="url")
    return finish(indicators, rejects, early)


def _drop_port(value: str) -> str:
    """"1.2.3.4:443" -> "1.2.3.4"; also "2001:db8::1:443" and "[2001:db8::1]:443".

    The type says a port follows, so the last ":" is cut even in a bare IPv6 address, which the
    generic normalizer would otherwise read as part of the address: such an address is bracketed
    as it should have been written, then read by the one host:port rule.
    """
    text = value.strip()
    if text.count(":") > 1 and not text.startswith("["):
        address, _, last = text.rpartition(":")
        text = f"[{address}]:{last}"
    try:
        host, port = split_host_port(text)
    except HostPortError:
        return value
    return host if port is not None and port.isdigit() else value
