"""The one rule for a network interface name, shared by `check-config` and the nft renderer so
that what the configuration accepts is what the kernel can be given."""

from __future__ import annotations

import re

# Linux allows up to 15 bytes (IFNAMSIZ - 1); we also keep to characters that need no quoting
# in an nft script. Wildcards (iptables' `ppp+`, nft's `ppp*`) are refused: the kill switch
# must name the interfaces it cuts, so that it can check they exist and carry the default route.
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")


def ifname_problem(name: object) -> str | None:
    """Why `name` cannot be used as an interface name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "an interface name is a non-empty string"
    if name in (".", ".."):
        return f"{name!r} is not an interface name"
    if "+" in name or "*" in name:
        return (f"{name!r} is a wildcard: list each interface by its name (ip -br link shows "
                "them)")
    if not _IFNAME_RE.fullmatch(name):
        return (f"{name!r} is not an interface name (1 to 15 letters, digits or . _ - @)")
    return None
