"""Checks of one value of a config, each a function that returns the value (normalised) or raises
`Problem` with the message an operator reads after the key path; and the one rule of a listen address.

The checks are what a key's declaration names (agent.config.keys, e.g. `items(..., ipv4)`); they know
nothing of where the value sits, so one check serves a key, a list item and a group member alike.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from agent.errors import ConfigError
from agent.model import OTHER, UNKNOWN

# An allowlist wider than this is no allowlist: it would let a typo probe half the Internet.
MIN_PREFIX_LENGTH = 16
ASN_MAX = 4294967295  # 32-bit AS numbers (RFC 6793)
# The patterns are compiled on first use (re.match and re.fullmatch keep them in re's cache): most are
# for keys a file rarely sets, and compiling them all at import was 1 ms of every command that reads a
# config, `nkprobe trace`'s start-up among them (bench/startup.py).
GROUP_NAME = r"^[a-z][a-z0-9_]{0,31}$"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SUFFIX = rf"^\.?({_LABEL})(\.{_LABEL})*$"
_NETNS = r"^[A-Za-z0-9_.-]{1,255}$"
# agent.owner: a plain e-mail address (no display name, no spaces): it becomes a label value and an
# Alertmanager e-mail `to`, so nothing that could smuggle a second recipient or a header.
_OWNER = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"


class Problem(ValueError):
    """What is wrong with one value; whoever reads it prefixes the key path."""


def bounds(ge: float | None = None, gt: float | None = None, le: float | None = None) -> str:
    """The message of a number out of its range.

    >>> bounds(gt=0, le=1000), bounds(ge=1, le=65535)
    ('must be > 0 and <= 1000', 'must be >= 1 and <= 65535')
    """
    parts = []
    if gt is not None:
        parts.append(f"> {fmt(gt)}")
    if ge is not None:
        parts.append(f">= {fmt(ge)}")
    if le is not None:
        parts.append(f"<= {fmt(le)}")
    return "must be " + " and ".join(parts)


def fmt(value: float) -> str:
    """A bound or a setting as written in a message: 16, not 16.0."""
    return str(int(value)) if float(value).is_integer() else str(value)


def integer(value: Any, ge: int | None = None, le: int | None = None) -> int:
    # bool is an int in Python; `port = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem("must be an integer")
    if (ge is not None and value < ge) or (le is not None and value > le):
        raise Problem(bounds(ge, None, le))
    return value


def asn(value: Any) -> int:
    """An AS number: 32 bits (RFC 6793); 0 is reserved (RFC 7607)."""
    return integer(value, ge=1, le=ASN_MAX)


def ipv4(value: Any) -> str:
    if isinstance(value, str):
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            pass
    raise Problem("not an IPv4 address")


def one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    """A check that the value is one of `choices` (a protocol name, say)."""

    def check(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise Problem(f"must be one of {', '.join(choices)}")

    return check


def text(value: Any) -> str:
    """A non-empty string: a file name in a list."""
    if not isinstance(value, str) or not value.strip():
        raise Problem("must be a non-empty string")
    return value


def allowlist_prefix(value: Any) -> str:
    return _network(value, "175.45.176.0/22", "an allowlist")


def exchange_lan(value: Any) -> str:
    """An exchange's peering LAN: an IPv4 prefix, no host bits, /16 or longer."""
    # Peering LANs are /24 to /21; a short prefix would pass over real routers as exchange hops.
    return _network(value, "80.81.192.0/21", "an exchange LAN")


def routed_prefix(value: Any) -> str:
    """Special-purpose IPv4 space routed in a test bed: classify.routed_prefixes."""
    if isinstance(value, str):
        try:
            net = ipaddress.IPv4Network(value)
        except ValueError:
            pass
        else:
            if not net.is_global:
                return str(net)
            raise Problem(f"{net} is public space, which is routed anyway; list special-purpose space")
    raise Problem("must be a special-purpose IPv4 prefix without host bits, like 198.18.0.0/15")


def _network(value: Any, example: str, what: str) -> str:
    """An IPv4 prefix without host bits, /MIN_PREFIX_LENGTH or longer (`what` it is, for the message)."""
    if not isinstance(value, str):
        raise Problem(f"must be a string like {example}")
    try:
        net = ipaddress.IPv4Network(value)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise Problem(
                f"{value} has host bits set; write {ipaddress.IPv4Network(value, strict=False)}"
            ) from None
        raise Problem(f"not an IPv4 prefix: {value!r}") from None
    if net.prefixlen < MIN_PREFIX_LENGTH:
        raise Problem(f"{net} is too broad for {what}; use /{MIN_PREFIX_LENGTH} or longer")
    return str(net)


def download_url(value: Any) -> str:
    """Where `nkprobe asn update` downloads a table from."""
    return _url(value, ("http", "https", "file"), "must be an http, https or file URL")


def api_url(value: Any) -> str:
    """The base of a web API (RIPEstat)."""
    return _url(value, ("http", "https"), "must be an http or https URL such as https://stat.ripe.net")


def websocket_url(value: Any) -> str:
    """A WebSocket endpoint (RIS Live); ws:// for a local server."""
    return _url(value, ("ws", "wss"), "must be a ws or wss URL such as wss://ris-live.ripe.net/v1/ws/")


def _url(value: Any, schemes: tuple[str, ...], message: str) -> str:
    from urllib.parse import urlsplit  # here: only a file that sets a URL pays for its import

    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in schemes and (parts.netloc or parts.scheme == "file"):
            return value
    raise Problem(message)


def name_suffix(value: Any) -> str:
    """A reverse-DNS suffix, stored without its leading dot and in lower case."""
    if isinstance(value, str) and re.match(_SUFFIX, value):
        return value.lstrip(".").lower()
    raise Problem("must be a DNS name suffix such as transtelecom.net")


def group_problem(group: str, known: set[str] | None) -> None:
    """A group name of [upstreams], or (with `known`) one of those groups ([borders], names.suffixes)."""
    # The tags every path may get, whatever the groups (README "Upstream tags").
    if group in (OTHER, UNKNOWN):
        raise Problem(f"{group!r} is a reserved tag and cannot be a group name")
    if not re.match(GROUP_NAME, group):
        raise Problem("must be lowercase letters, digits and _ (a label value)")
    if known is not None and group not in known:
        raise Problem(f"{group!r} is not a group in [upstreams]")


def netns_name(value: str) -> str:
    """A network namespace name, or "" for the current namespace."""
    if value and (not re.match(_NETNS, value) or value in (".", "..")):
        raise Problem("must be a network namespace name (letters, digits, . _ -)")
    return value


def owner_address(value: str) -> str:
    """An e-mail address, or "" for no owner.

    >>> owner_address("ann@example.org")
    'ann@example.org'
    """
    if value and not re.fullmatch(_OWNER, value):
        raise Problem("must be an e-mail address such as volunteer@example.org (alerts go there)")
    return value


def listen_address(value: str) -> str:
    problem = listen_problem(value)
    if problem is not None:
        raise Problem(problem)
    return value


def listen_problem(text: str) -> str | None:
    """What is wrong with a listen address, or None: the one rule of `agent.listen`, check-config and
    `nkprobe run --web.listen-address` alike.

    HOST:PORT, [IPv6]:PORT or :PORT (all interfaces), as Prometheus exporters write it. The host is an
    IP address or `localhost`: a name would be resolved once at start-up, to whatever the resolver says
    then (`pi.local` over mDNS, maybe nothing at boot), so it is refused rather than bound by surprise.
    Port 0 binds any free port (the server logs which).

    >>> [listen_problem(a) for a in ("127.0.0.1:9931", "[::1]:80", ":9931", "localhost:0")]
    [None, None, None, None]
    >>> listen_problem("pi.local:9931")
    "give the host as an IP address or localhost, not 'pi.local' (a name is not resolved)"
    >>> listen_problem("::1:9931")
    'write an IPv6 host in brackets, e.g. [::1]:9931'
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT with a port from 0 (any free port) to 65535, e.g. 127.0.0.1:9931"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"not an IPv6 address in brackets: {host}"
        return None
    if ":" in host:
        return "write an IPv6 host in brackets, e.g. [::1]:9931"
    if host in ("", "localhost"):
        return None
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return f"give the host as an IP address or localhost, not {host!r} (a name is not resolved)"
    return None


def parse_listen(text: str) -> tuple[str, int]:
    """The (host, port) to bind of a listen address that passes `listen_problem`; else ConfigError.

    >>> parse_listen("127.0.0.1:9931"), parse_listen("[::1]:80"), parse_listen(":9931")
    (('127.0.0.1', 9931), ('::1', 80), ('', 9931))
    """
    problem = listen_problem(text)
    if problem is not None:
        raise ConfigError(f"listen address {text!r}: {problem}")
    host, _, port = text.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)
