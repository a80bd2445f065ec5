"""What a configuration is once read: immutable values, with the defaults operators rely on.

Operators' files and runbooks rely on these key names: extend, never rename (the loader derives
the accepted keys of each section from these fields). Lists are tuples and sub-sections frozen
dataclasses, so a Config can be shared between threads and compared with the previous one on
reload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_CONFIG_PATH = "/etc/blocklist-agent/agent.yaml"
DEFAULT_STATE_DIR = "/var/lib/blocklist-agent"
DEFAULT_LOCAL_DIR = "/etc/blocklist-agent/local.d"

FEED_FORMATS = (
    "manifest", "auto", "plain", "hosts", "spamhaus-drop", "spamhaus-json", "feodo-csv",
    "threatfox-csv", "urlhaus-csv", "misp-csv", "misp-json", "stix2", "rpz", "misp-warninglist",
)
SIGNATURES = ("minisign", "none")
# Where a feed comes from: a signed feed directory or list (as always), or a sharing platform's
# API that is trusted through https and a credential instead of a signature.
SOURCES = ("signed", "misp", "misp-feed", "taxii")
ROLES = ("block", "allow")
FIREWALL_BACKENDS = ("nftables", "none")
DNS_BACKENDS = ("unbound", "bind", "knot-resolver", "dnsupdate", "none")
DNS_ACTIONS = ("nxdomain", "nodata", "drop", "redirect:<address or name>")
MIN_REFRESH = 60
DEFAULT_MAX_INDICATORS = 1_000_000
# firehol_level1 as published blocks 0.72 % of public IPv4 (Spamhaus DROPv6: 0.00007 % of IPv6):
# 2 % passes it with a margin of almost three and holds a feed adding more than four /8s.
DEFAULT_MAX_ADDRESS_SHARE = 0.02

# Feed and peer names end up in file names and are typed on the command line.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class MispFilters:
    """`filters:` of a `source: misp` feed: what MISP's /attributes/restSearch is asked for.

    Sent as MISP's own parameters (to_ids, published, tags, last, enforceWarninglist, limit,
    excludeDecayed) so that an operator can check them against the MISP documentation.
    """

    # ask MISP for attributes flagged for detection only (the agent never blocks another one)
    to_ids: bool = True
    published: bool | None = None  # None: published and unpublished events
    tags: tuple[str, ...] = ()  # any of these tags (MISP's OR); "!tag" excludes
    last: int | None = None  # seconds: events published within this window
    warninglists: bool = False  # enforceWarninglist: MISP drops values on its warninglists
    exclude_decayed: bool = False  # excludeDecayed: MISP drops attributes its decay models aged
    limit: int = 1000  # attributes per page


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str
    trusted_keys: tuple[str, ...] = ()
    refresh: int = 900  # seconds
    max_size: int = 256 * 1024 * 1024  # bytes
    format: str = "manifest"  # "manifest": a signed feed directory; otherwise one list file
    signature: str = "minisign"  # "minisign" | "none"
    subdomains: bool = False  # treat every name of this feed as covering its subdomains
    max_reject_ratio: float = 0.2  # more malformed lines than this: the whole update is refused
    timeout: int = 30  # seconds, per HTTP request
    mirrors: tuple[str, ...] = ()  # other URLs of the same feed, tried in order after `url`
    ca_file: str | None = None  # extra CA bundle for https (a private PKI)
    min_prefix_v4: int | None = None  # this feed's own guards.min_prefix_v4 (None: the guards')
    min_prefix_v6: int | None = None  # e.g. Spamhaus DROPv6 and its /29 allocations
    # a signed single list older than this (by its signed timestamp) is stale, like `expires`
    max_age: int | None = None  # seconds
    # more entries than this refuse the update: 1M cost about 500 MiB in the agent and 400 MiB in
    # nft on the reference machine, what a 1 GB gateway can hold (docs/design.md §3, §5)
    max_indicators: int = DEFAULT_MAX_INDICATORS
    source: str = "signed"  # "signed" | "misp" | "misp-feed" | "taxii"
    # the credential of an API source (MISP key, TAXII "user:password" or token): only its path
    # is kept here, so the secret never sits in a value that is logged, compared or printed
    auth_file: str | None = None
    filters: MispFilters | None = None  # source: misp only
    role: str = "block"  # "block" | "allow": the entries are never blocked by any feed
    line: int = 0  # where the feed is defined in the config file, for messages


@dataclass(frozen=True)
class GuardConfig:
    min_prefix_v4: int = 8
    min_prefix_v6: int = 32
    max_change: float = 0.5
    protected: tuple[str, ...] = ()  # CIDRs and names (names include their subdomains)
    allow_special: tuple[str, ...] = ()  # special-purpose ranges that may be blocked anyway
    # held above this fraction of public IPv4 or IPv6 space blocked (agent/coverage.py)
    max_address_share: float = DEFAULT_MAX_ADDRESS_SHARE
    # lifelines found automatically (feed servers, resolvers, NTP, the DNS primary) that the
    # operator does not want protected: addresses, networks or names
    lifeline_except: tuple[str, ...] = ()


@dataclass(frozen=True)
class FirewallConfig:
    backend: str = "nftables"  # "nftables" | "none"
    table: str = "blocklist_agent"
    lan_interfaces: tuple[str, ...] = ()
    wan_interfaces: tuple[str, ...] = ()
    management: tuple[str, ...] = ()  # CIDRs never cut, not even by isolation
    offender_timeout: int = 86400  # seconds an internal host stays in the offenders set
    log_prefix: str = "blocklist-agent: "


@dataclass(frozen=True)
class DnsConfig:
    backend: str = "none"  # "unbound" | "bind" | "knot-resolver" | "dnsupdate" | "none"
    zone: str = "rpz.blocklist-agent."
    zonefile: str = "/var/lib/unbound/rpz.blocklist-agent.zone"
    action: str = "nxdomain"  # "nxdomain" | "nodata" | "drop" | "redirect:<ip>"
    # command prefix, e.g. "unbound-control -c /etc/unbound/unbound.conf"
    control: str | None = None
    server: str | None = None  # resolver or primary to query (host or host:port)
    tsig_key_file: str | None = None  # dnsupdate: BIND-style key file
    ttl: int = 300
    # command prefix checking a new zone file before it is served (ZONE FILE appended), e.g.
    # "named-checkzone"; default: named-checkzone for bind, only the agent's own check otherwise
    check: str | None = None
    # the resolver clients use, asked by `status` and `why` (host or host:port); default:
    # server, else 127.0.0.1
    resolver: str | None = None


@dataclass(frozen=True)
class IsolationConfig:
    allow: tuple[str, ...] = ()  # CIDRs and names kept reachable during isolation
    peers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, CIDRs) in file order
    allow_feeds: bool = False  # keep the configured feed servers reachable during isolation

    def peer(self, name: str) -> tuple[str, ...] | None:
        for peer_name, cidrs in self.peers:
            if peer_name == name:
                return cidrs
        return None


@dataclass(frozen=True)
class Config:
    path: str = DEFAULT_CONFIG_PATH
    state_dir: str = DEFAULT_STATE_DIR
    local_dir: str = DEFAULT_LOCAL_DIR
    feeds: tuple[FeedConfig, ...] = ()
    guards: GuardConfig = field(default_factory=GuardConfig)
    firewall: FirewallConfig = field(default_factory=FirewallConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    isolation: IsolationConfig = field(default_factory=IsolationConfig)
    metrics_file: str | None = None  # node_exporter textfile path
    # one sync: the feeds still to download after this many seconds are refused for the round
    sync_timeout: int = 300
    # what one sync holds in memory, all feeds together (a 1 GB gateway: ~400 MB for these)
    max_sync_bytes: int = 256 * 1024 * 1024
    max_sync_indicators: int = 2_000_000

    def feed(self, name: str) -> FeedConfig | None:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        return None
