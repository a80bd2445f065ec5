"""blocklist-agent: signed blocklists enforced in nftables and DNS RPZ, plus the kill switch."""

__version__ = "0.1.0"
