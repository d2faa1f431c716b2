"""The allowlist: probe only addresses inside the configured destination prefixes.

`[destination] prefixes` in the config (README "Commands", Safety) is both "what we measure" and "what we may
send to": an agent must never be turned into a scanner of other networks by a typo or a hostile argument.
Every prober and command checks its target here before any socket is opened.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from agent.errors import NotAllowedError, UsageError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> IPAddress:
    """A literal IP address; names are refused (no DNS on the probing path).

    >>> str(parse_address(" 198.19.176.10 "))
    '198.19.176.10'
    """
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise UsageError(
            f"{text!r} is not an IP address; give the target as a literal address such as 175.45.176.71"
        ) from None


class Allowlist:
    """The destination prefixes; `check` raises NotAllowedError for anything outside them.

    >>> a = Allowlist(["198.19.176.0/22"])
    >>> a.allows("198.19.179.20"), a.allows("198.19.180.1")
    (True, False)
    """

    def __init__(self, prefixes: Iterable[str]) -> None:
        networks: list[IPNetwork] = []
        for p in prefixes:
            try:
                networks.append(ipaddress.ip_network(p.strip(), strict=False))
            except ValueError:
                raise UsageError(
                    f"destination prefix {p!r} is not a network such as 175.45.176.0/22"
                ) from None
        self.networks: tuple[IPNetwork, ...] = tuple(networks)

    def allows(self, address: str | IPAddress) -> bool:
        ip = parse_address(address) if isinstance(address, str) else address
        return any(ip.version == n.version and ip in n for n in self.networks)

    def check(self, address: str) -> str:
        """The normalised address if allowed; NotAllowedError (exit 2, one line) otherwise."""
        ip = parse_address(address)
        if not self.allows(ip):
            listed = ", ".join(str(n) for n in self.networks) or "none"
            raise NotAllowedError(
                f"{ip} is outside the configured destination prefixes ({listed}); "
                "add its prefix to [destination] prefixes of the config given by --config"
            )
        return str(ip)
