"""The configuration: one YAML file read into immutable, validated values, with every problem
reported at once as FILE:LINE: KEY.PATH (model, units, node reader, one module per section)."""

from agent.config.model import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_LOCAL_DIR,
    DEFAULT_STATE_DIR,
    DNS_ACTIONS,
    DNS_BACKENDS,
    FEED_FORMATS,
    FIREWALL_BACKENDS,
    MIN_REFRESH,
    SIGNATURES,
    Config,
    DnsConfig,
    FeedConfig,
    FirewallConfig,
    GuardConfig,
    IsolationConfig,
)
from agent.config.reader import ConfigProblems, load, loads
from agent.config.units import MAX_DURATION, parse_duration, parse_size

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_LOCAL_DIR",
    "DEFAULT_STATE_DIR",
    "DNS_ACTIONS",
    "DNS_BACKENDS",
    "FEED_FORMATS",
    "FIREWALL_BACKENDS",
    "MAX_DURATION",
    "MIN_REFRESH",
    "SIGNATURES",
    "Config",
    "ConfigProblems",
    "DnsConfig",
    "FeedConfig",
    "FirewallConfig",
    "GuardConfig",
    "IsolationConfig",
    "load",
    "loads",
    "parse_duration",
    "parse_size",
]
