"""The `dns:` section: which resolver serves the RPZ zone, how it is told, and what a blocked
name answers. Command prefixes are split like a shell would but never run by one."""

from __future__ import annotations

import shlex

from yaml.nodes import Node

from agent.config.model import DNS_ACTIONS, DNS_BACKENDS, DnsConfig
from agent.config.nodes import given
from agent.config.values import ValueReader, canonical_address_or_name
from agent.indicators import InvalidValue, normalize_domain
from agent.util.hostport import HostPortError, port_number, split_host_port

_MAX_TTL = 2**31 - 1  # RFC 2181


def read_dns(r: ValueReader, node: Node) -> DnsConfig | None:
    m = r.section(node, "dns", DnsConfig)
    if m is None:
        return None
    kw = r.settings(m, "dns", {
        "backend": lambda n, p: r.choice(n, p, DNS_BACKENDS),
        "zone": lambda n, p: _zone(r, n, p),
        "zonefile": r.file_path,
        "action": lambda n, p: _action(r, n, p),
        "control": lambda n, p: _command(r, n, p),
        "server": lambda n, p: _server(r, n, p),
        "tsig_key_file": lambda n, p: r.trusted_file(n, p, optional=True),
        "ttl": lambda n, p: r.duration(n, p, maximum=_MAX_TTL),
        "check": lambda n, p: _command(r, n, p),
        "resolver": lambda n, p: _server(r, n, p),
    })
    if kw.get("backend") == "dnsupdate" and "server" not in m:
        r.report(node, "dns.server", "missing",
                 hint="the dnsupdate backend sends updates to a primary server: write "
                 "server: 192.0.2.53 (or host:port)")
    if kw.get("backend") == "dnsupdate" and "tsig_key_file" not in m:
        r.report(node, "dns.tsig_key_file", "missing",
                 hint="the dnsupdate backend signs its updates with TSIG: write the path "
                 "of the key file made by `tsig-keygen blocklist-agent`")
    return given(DnsConfig, kw)


def _zone(r: ValueReader, node: Node, path: str) -> str | None:
    zone = r.text(node, path)
    if zone is None:
        return None
    try:
        return normalize_domain(zone) + "."
    except InvalidValue as exc:
        r.report(node, path, str(exc), hint="write a DNS name such as rpz.blocklist-agent.")
        return None


def _command(r: ValueReader, node: Node, path: str) -> str | None:
    """A command prefix, split like a shell would (quotes allowed), but never run by one."""
    value = r.text(node, path, optional=True)
    if value is None:
        return None
    try:
        shlex.split(value)
    except ValueError as exc:
        r.report(node, path, f"cannot be split into words: {exc}", value, hint="check the quotes")
        return None
    return value


def _action(r: ValueReader, node: Node, path: str) -> str | None:
    value = r.text(node, path)
    if value is None:
        return None
    keyword, colon, target = value.partition(":")
    keyword = keyword.strip().lower()
    if keyword in ("nxdomain", "nodata", "drop") and not colon:
        return keyword
    if keyword == "redirect" and target.strip():
        try:
            where = canonical_address_or_name(target.strip())
            if "/" in where:
                raise InvalidValue(f"not a single address or name: {target.strip()}")
        except InvalidValue as exc:
            r.report(node, path, f"bad redirect target: {exc}",
                     hint="write redirect:192.0.2.80 or redirect:blocked.example.fr")
            return None
        return f"redirect:{where}"
    r.report(node, path, "not one of " + ", ".join(DNS_ACTIONS), value,
             hint="nxdomain is the usual choice; redirect: sends users to a page that "
             "explains the block")
    return None


def _server(r: ValueReader, node: Node, path: str) -> str | None:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address; kept as written."""
    value = r.text(node, path, optional=True)
    if value is None:
        return None
    try:
        host, port = split_host_port(value)
        if port is not None:
            port_number(port)
        problem = "not a single host" if "/" in canonical_address_or_name(host) else ""
    except (HostPortError, InvalidValue) as exc:
        problem = str(exc)
    if problem:
        r.report(node, path, f"not a server address: {problem}", value,
                 hint="write 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53 or ns1.example.fr")
        return None
    return value
