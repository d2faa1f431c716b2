"""Validating a config: defaults, then types and ranges, then cross-field rules, each problem by its key
path (as blackbox_exporter's config/config.go), and the one rule of a listen address."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from agent.config.model import (
    DEFAULT_BORDERS,
    DEFAULT_NAME_SUFFIXES,
    DEFAULT_UPSTREAMS,
    MAX_PPS,
    MIN_PREFIX_LENGTH,
    PING_PROTOCOLS,
    RESERVED_GROUPS,
    TRACE_PROTOCOLS,
    AgentSection,
    AsnSection,
    BgpSection,
    ClassifySection,
    Config,
    DestinationSection,
    HistorySection,
    NamesSection,
    PingSection,
    TargetOptions,
    TraceSection,
)
from agent.errors import ConfigError
from agent.model import Target

_T = TypeVar("_T")
_INVALID: Any = object()  # marks a value that failed its check; cross-field rules skip it
_GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SUFFIX = re.compile(
    r"^\.?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_NETNS = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bounds(ge: float | None, gt: float | None, le: float | None) -> str:
    parts = []
    if gt is not None:
        parts.append(f"> {_fmt(gt)}")
    if ge is not None:
        parts.append(f">= {_fmt(ge)}")
    if le is not None:
        parts.append(f"<= {_fmt(le)}")
    return "must be " + " and ".join(parts)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def table(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.add(_join(path, key), "must be a table")
            return {}
        return value

    def unknown(self, table: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(allowed)}"
                self.add(_join(path, key), "unknown key" + hint)

    def number(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float:
        if key not in table:
            return default
        value = table[key]
        where = _join(path, key)
        # bool is an int in Python; `max_pps = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(where, "must be a number of seconds" if key.endswith("_s") else "must be a number")
            return _INVALID  # type: ignore[no-any-return]
        if (
            (gt is not None and value <= gt)
            or (ge is not None and value < ge)
            or (le is not None and value > le)
        ):
            self.add(where, _bounds(ge, gt, le))
            return _INVALID  # type: ignore[no-any-return]
        return float(value)

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        ge: int | None = None,
        le: int | None = None,
    ) -> int:
        if key not in table:
            return default
        return self.int_value(table[key], _join(path, key), ge=ge, le=le)

    def int_value(self, value: Any, where: str, *, ge: int | None = None, le: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(where, "must be an integer")
            return _INVALID  # type: ignore[no-any-return]
        if (ge is not None and value < ge) or (le is not None and value > le):
            self.add(where, _bounds(ge, None, le))
            return _INVALID  # type: ignore[no-any-return]
        return value

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: str,
        *,
        nonempty: bool = False,
    ) -> str:
        if key not in table:
            return default
        value = table[key]
        where = _join(path, key)
        if not isinstance(value, str):
            self.add(where, "must be a string")
            return _INVALID  # type: ignore[no-any-return]
        if nonempty and not value.strip():
            self.add(where, "must not be empty")
            return _INVALID  # type: ignore[no-any-return]
        return value

    def boolean(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            self.add(_join(path, key), "must be true or false")
            return _INVALID  # type: ignore[no-any-return]
        return value

    def choice(
        self, table: Mapping[str, Any], key: str, path: str, default: str, choices: tuple[str, ...]
    ) -> str:
        value = self.string(table, key, path, default)
        if value is _INVALID or value in choices:
            return value
        self.add(_join(path, key), f"must be one of {', '.join(choices)}")
        return _INVALID  # type: ignore[no-any-return]

    def items(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: tuple[_T, ...],
        check: Callable[[Any, str], _T],
        *,
        nonempty: bool = False,
        unique: bool = True,
    ) -> tuple[_T, ...]:
        """A list whose items each pass `check(value, item_path)` (which reports and returns _INVALID)."""
        if key not in table:
            return default
        where = _join(path, key)
        value = table[key]
        if not isinstance(value, list):
            self.add(where, "must be a list")
            return _INVALID  # type: ignore[no-any-return]
        if nonempty and not value:
            self.add(where, "must not be empty")
            return _INVALID  # type: ignore[no-any-return]
        out: list[_T] = []
        seen: set[Any] = set()
        bad = False
        for index, item in enumerate(value):
            checked = check(item, f"{where}[{index}]")
            if checked is _INVALID:
                bad = True
                continue
            if unique and checked in seen:
                self.add(f"{where}[{index}]", f"{checked} is listed twice")
                bad = True
                continue
            seen.add(checked)
            out.append(checked)
        return _INVALID if bad else tuple(out)

    # item checks ---------------------------------------------------------------------------------

    def ipv4(self, value: Any, where: str) -> str:
        if isinstance(value, str):
            try:
                return str(ipaddress.IPv4Address(value))
            except ValueError:
                pass
        self.add(where, "not an IPv4 address")
        return _INVALID  # type: ignore[no-any-return]

    def prefix(self, value: Any, where: str) -> str:
        return self._network(value, where, "175.45.176.0/22", "an allowlist")

    def lan_prefix(self, value: Any, where: str) -> str:
        """An exchange's peering LAN: an IPv4 prefix, no host bits, /16 or longer."""
        # Peering LANs are /24 to /21; a short prefix would pass over real routers as exchange hops.
        return self._network(value, where, "80.81.192.0/21", "an exchange LAN")

    def routed_prefix(self, value: Any, where: str) -> str:
        """Special-purpose IPv4 space routed in a test bed: classify.routed_prefixes."""
        if isinstance(value, str):
            try:
                net = ipaddress.IPv4Network(value)
            except ValueError:
                pass
            else:
                if not net.is_global:
                    return str(net)
                self.add(where, f"{net} is public space, which is routed anyway; list special-purpose space")
                return _INVALID  # type: ignore[no-any-return]
        self.add(where, "must be a special-purpose IPv4 prefix without host bits, like 198.18.0.0/15")
        return _INVALID  # type: ignore[no-any-return]

    def _network(self, value: Any, where: str, example: str, what: str) -> str:
        """An IPv4 prefix without host bits, /MIN_PREFIX_LENGTH or longer (`what` it is, for the message)."""
        if not isinstance(value, str):
            self.add(where, f"must be a string like {example}")
            return _INVALID  # type: ignore[no-any-return]
        try:
            net = ipaddress.IPv4Network(value)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                self.add(
                    where, f"{value} has host bits set; write {ipaddress.IPv4Network(value, strict=False)}"
                )
            else:
                self.add(where, f"not an IPv4 prefix: {value!r}")
            return _INVALID  # type: ignore[no-any-return]
        if net.prefixlen < MIN_PREFIX_LENGTH:
            self.add(where, f"{net} is too broad for {what}; use /{MIN_PREFIX_LENGTH} or longer")
            return _INVALID  # type: ignore[no-any-return]
        return str(net)

    def asn(self, value: Any, where: str) -> int:
        # 32-bit AS numbers (RFC 6793); 0 is reserved (RFC 7607).
        return self.int_value(value, where, ge=1, le=4294967295)

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.add(where, "must be a non-empty string")
            return _INVALID  # type: ignore[no-any-return]
        return value

    def url(self, value: Any, where: str) -> str:
        return self._url(value, where, ("http", "https", "file"), "must be an http, https or file URL")

    def http_url(self, table: Mapping[str, Any], key: str, path: str, default: str) -> str:
        value = self.string(table, key, path, default)
        if value is _INVALID:
            return _INVALID
        message = "must be an http or https URL such as https://stat.ripe.net"
        return self._url(value, _join(path, key), ("http", "https"), message)

    def _url(self, value: Any, where: str, schemes: tuple[str, ...], message: str) -> str:
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme in schemes and (parts.netloc or parts.scheme == "file"):
                return value
        self.add(where, message)
        return _INVALID  # type: ignore[no-any-return]

    def suffix(self, value: Any, where: str) -> str:
        if isinstance(value, str) and _SUFFIX.match(value):
            return value.lstrip(".").lower()
        self.add(where, "must be a DNS name suffix such as transtelecom.net")
        return _INVALID  # type: ignore[no-any-return]


def _resolve(base_dir: str, value: str) -> str:
    if not value or value is _INVALID:
        return value
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))


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


# Settings of the probe engine that the file does not set: tuned against the benches
# (bench/RESULTS.md, "Probe engine"), not per site.
_ENGINE_ONLY = ("window", "pace", "packet_size")
_KNOWN: dict[str, tuple[str, ...]] = {
    "": (
        "agent",
        "targets",
        "ping",
        "trace",
        "asn",
        "upstreams",
        "destination",
        "history",
        "names",
        "borders",
        "classify",
        "bgp",
    ),
    "agent": tuple(f.name for f in fields(AgentSection)),
    "ping": tuple(f.name for f in fields(PingSection)),
    "trace": tuple(f.name for f in fields(TraceSection) if f.name not in _ENGINE_ONLY),
    "asn": tuple(f.name for f in fields(AsnSection)),
    "destination": tuple(f.name for f in fields(DestinationSection)),
    "history": tuple(f.name for f in fields(HistorySection)),
    "names": tuple(f.name for f in fields(NamesSection)),
    "classify": tuple(f.name for f in fields(ClassifySection)),
    "bgp": tuple(f.name for f in fields(BgpSection)),
    "targets": ("address", "name", "protocol", "port", "ping_protocols"),
}


def _build(data: Mapping[str, Any], base_dir: str, source: str | None) -> tuple[Config | None, list[str]]:
    r = _Reader()
    r.unknown(data, _KNOWN[""], "")

    # [agent]
    t = r.table(data, "agent", "")
    r.unknown(t, _KNOWN["agent"], "agent")
    d_agent = AgentSection()
    name = r.string(t, "name", "agent", d_agent.name, nonempty=True)
    listen = r.string(t, "listen", "agent", d_agent.listen, nonempty=True)
    if listen is not _INVALID and (problem := listen_problem(listen)) is not None:
        r.add("agent.listen", problem)
    state_dir = r.string(t, "state_dir", "agent", d_agent.state_dir, nonempty=True)
    max_pps = r.number(t, "max_pps", "agent", d_agent.max_pps, gt=0, le=MAX_PPS)
    netns = r.string(t, "netns", "agent", d_agent.netns)
    if netns not in ("", _INVALID) and (not _NETNS.match(netns) or netns in (".", "..")):
        r.add("agent.netns", "must be a network namespace name (letters, digits, . _ -)")
    web_config_file = r.string(t, "web_config_file", "agent", d_agent.web_config_file)

    # [ping]
    t = r.table(data, "ping", "")
    r.unknown(t, _KNOWN["ping"], "ping")
    d_ping = PingSection()
    ping_interval = r.number(t, "interval_s", "ping", d_ping.interval_s, gt=0, le=86400)
    ping_protocols = r.items(
        t, "protocols", "ping", d_ping.protocols, _choice_check(r, PING_PROTOCOLS), nonempty=True
    )
    ping_port = r.integer(t, "port", "ping", d_ping.port, ge=1, le=65535)
    ping_timeout = r.number(t, "timeout_s", "ping", d_ping.timeout_s, gt=0, le=60)

    # [trace]
    t = r.table(data, "trace", "")
    r.unknown(t, _KNOWN["trace"], "trace")
    d_trace = TraceSection()
    trace: dict[str, Any] = {
        "interval_s": r.number(t, "interval_s", "trace", d_trace.interval_s, gt=0, le=86400),
        "protocol": r.choice(t, "protocol", "trace", d_trace.protocol, TRACE_PROTOCOLS),
        "port": r.integer(t, "port", "trace", d_trace.port, ge=1, le=65535),
        # Paris flow identifiers: enough for MDA-like coverage of a few per-flow balancers, bounded so a
        # round stays within the packet budget.
        "flows": r.integer(t, "flows", "trace", d_trace.flows, ge=1, le=64),
        "max_hops": r.integer(t, "max_hops", "trace", d_trace.max_hops, ge=1, le=255),
        "timeout_s": r.number(t, "timeout_s", "trace", d_trace.timeout_s, gt=0, le=60),
        "grace_s": r.number(t, "grace_s", "trace", d_trace.grace_s, ge=0, le=60),
        "near_factor": r.number(t, "near_factor", "trace", d_trace.near_factor, gt=0, le=100),
        "silent_min_s": r.number(t, "silent_min_s", "trace", d_trace.silent_min_s, gt=0, le=60),
        "silent_max_s": r.number(t, "silent_max_s", "trace", d_trace.silent_max_s, gt=0, le=60),
        "retries": r.integer(t, "retries", "trace", d_trace.retries, ge=0, le=10),
        "gap_limit": r.integer(t, "gap_limit", "trace", d_trace.gap_limit, ge=1, le=255),
        "hysteresis": r.integer(t, "hysteresis", "trace", d_trace.hysteresis, ge=1, le=100),
    }
    gap_default = trace["gap_limit"] if trace["gap_limit"] is not _INVALID else d_trace.gap_limit
    trace["lookahead"] = r.integer(t, "lookahead", "trace", gap_default, ge=1, le=255)

    # [asn]
    t = r.table(data, "asn", "")
    r.unknown(t, _KNOWN["asn"], "asn")
    d_asn = AsnSection()
    asn_files = r.items(t, "files", "asn", d_asn.files, r.text)
    asn_sources = r.items(t, "sources", "asn", d_asn.sources, r.url)
    asn_update_dir = r.string(t, "update_dir", "asn", d_asn.update_dir)
    ripestat_url = r.http_url(t, "ripestat_url", "asn", d_asn.ripestat_url)

    # [destination]
    t = r.table(data, "destination", "")
    r.unknown(t, _KNOWN["destination"], "destination")
    d_dest = DestinationSection()
    dest_asn = r.asn(t["asn"], "destination.asn") if "asn" in t else d_dest.asn
    prefixes = r.items(t, "prefixes", "destination", d_dest.prefixes, r.prefix, nonempty=True)
    if prefixes is not _INVALID:
        nets = [ipaddress.IPv4Network(p) for p in prefixes]
        for i, a in enumerate(nets):
            for b in nets[:i]:
                if a.overlaps(b):
                    r.add(f"destination.prefixes[{i}]", f"{a} overlaps {b}; list each address once")

    # [upstreams]: tag = [ASNs]
    upstreams = _groups(r, data, "upstreams", dict(DEFAULT_UPSTREAMS), r.asn, what="an ASN")
    upstreams_ok = isinstance(data.get("upstreams", {}), dict)
    if upstreams_ok and not data.get("upstreams", True):
        r.add("upstreams", "must name at least one group, e.g. transtelecom = [20485]")
    groups = set(upstreams) | set(data.get("upstreams", {})) if upstreams_ok else None
    owner: dict[int, str] = {}
    for group, asns in upstreams.items():
        for index, asn in enumerate(asns):
            if asn in owner:
                r.add(
                    f"upstreams.{group}[{index}]",
                    f"AS{asn} is already in group {owner[asn]}; an ASN may be in only one group",
                )
            else:
                owner[asn] = group
    if dest_asn is not _INVALID and dest_asn in owner:
        r.add(f"upstreams.{owner[dest_asn]}", f"AS{dest_asn} is destination.asn; it cannot be an upstream")

    # [history]
    t = r.table(data, "history", "")
    r.unknown(t, _KNOWN["history"], "history")
    d_hist = HistorySection()
    history = HistorySection(
        retention_days=r.number(t, "retention_days", "history", d_hist.retention_days, gt=0, le=36500),
        prune_interval_s=r.number(
            t, "prune_interval_s", "history", d_hist.prune_interval_s, gt=0, le=86400 * 7
        ),
        max_pending=r.integer(t, "max_pending", "history", d_hist.max_pending, ge=1, le=1_000_000),
    )

    # [names]
    t = r.table(data, "names", "")
    r.unknown(t, _KNOWN["names"], "names")
    d_names = NamesSection()
    suffixes = _groups(
        r,
        t,
        "suffixes",
        dict(DEFAULT_NAME_SUFFIXES),
        r.suffix,
        what="a name suffix",
        path="names",
        groups=groups,
    )
    names = NamesSection(
        reverse_dns=r.boolean(t, "reverse_dns", "names", d_names.reverse_dns),
        timeout_s=r.number(t, "timeout_s", "names", d_names.timeout_s, gt=0, le=30),
        suffixes=suffixes,
    )

    # [borders]: tag = [addresses of the last upstream hop]
    borders = _groups(
        r, data, "borders", dict(DEFAULT_BORDERS), r.ipv4, what="an IPv4 address", groups=groups
    )
    seen_border: dict[str, str] = {}
    for group, addresses in borders.items():
        for index, address in enumerate(addresses):
            where = f"borders.{group}[{index}]"
            if address in seen_border:
                r.add(where, f"{address} is already a border of {seen_border[address]}")
            seen_border[address] = group
            if prefixes is not _INVALID and any(
                ipaddress.IPv4Address(address) in ipaddress.IPv4Network(p) for p in prefixes
            ):
                r.add(where, f"{address} is inside destination.prefixes, not an upstream")

    # [classify]
    t = r.table(data, "classify", "")
    r.unknown(t, _KNOWN["classify"], "classify")
    exchange_prefixes = r.items(
        t, "exchange_prefixes", "classify", ClassifySection().exchange_prefixes, r.lan_prefix
    )
    routed_prefixes = r.items(t, "routed_prefixes", "classify", (), r.routed_prefix)
    if exchange_prefixes is not _INVALID and prefixes is not _INVALID:
        dest_nets = [ipaddress.IPv4Network(p) for p in prefixes]
        for index, text in enumerate(exchange_prefixes):
            net = ipaddress.IPv4Network(text)
            for dest in dest_nets:
                if net.overlaps(dest):
                    r.add(
                        f"classify.exchange_prefixes[{index}]",
                        f"{net} overlaps destination.prefixes ({dest}); an exchange LAN lies outside it",
                    )

    # [bgp]
    t = r.table(data, "bgp", "")
    r.unknown(t, _KNOWN["bgp"], "bgp")
    bgp_snapshot = r.items(t, "snapshot", "bgp", BgpSection().snapshot, r.text)

    # [[targets]]
    targets, options = _targets(r, data, prefixes)

    # cross-field rules
    gap = trace["gap_limit"]
    hops = trace["max_hops"]
    if gap is not _INVALID and hops is not _INVALID and gap > hops:
        r.add("trace.gap_limit", f"must be <= trace.max_hops ({hops})")
    low, high = trace["silent_min_s"], trace["silent_max_s"]
    if low is not _INVALID and high is not _INVALID and low > high:
        r.add("trace.silent_min_s", f"must be <= trace.silent_max_s ({_fmt(high)})")
    ahead = trace["lookahead"]
    if gap is not _INVALID and ahead is not _INVALID and ahead < gap:
        # agent.trace.session: a silent stretch of gap_limit hops must be probed for the gap rule to stop
        r.add(
            "trace.lookahead", f"must be >= trace.gap_limit ({gap}), or a silent stretch never ends a trace"
        )
    warnings: list[str] = []
    if not r.problems and targets:
        per_round = sum(
            len(options.get(x.address, TargetOptions()).ping_protocols or ping_protocols) for x in targets
        )
        pps = per_round / ping_interval
        if pps > max_pps:
            warnings.append(
                f"ping.interval_s: {per_round} pings every {_fmt(ping_interval)} s need {pps:.3g} packets/s, "
                f"more than agent.max_pps ({_fmt(max_pps)}); pings will be delayed and traces starved"
            )

    if r.problems:
        return None, r.problems
    config = Config(
        agent=AgentSection(
            name=name,
            listen=listen,
            state_dir=_resolve(base_dir, state_dir),
            max_pps=max_pps,
            netns=netns,
            web_config_file=_resolve(base_dir, web_config_file),
        ),
        targets=targets,
        ping=PingSection(
            interval_s=ping_interval, protocols=ping_protocols, port=ping_port, timeout_s=ping_timeout
        ),
        trace=TraceSection(**trace),
        asn=AsnSection(
            files=tuple(_resolve(base_dir, f) for f in asn_files),
            sources=asn_sources,
            update_dir=_resolve(base_dir, asn_update_dir),
            ripestat_url=ripestat_url,
        ),
        upstreams=upstreams,
        destination=DestinationSection(asn=dest_asn, prefixes=prefixes),
        source_path=source,
        history=history,
        names=names,
        borders=borders,
        classify=ClassifySection(exchange_prefixes=exchange_prefixes, routed_prefixes=routed_prefixes),
        bgp=BgpSection(snapshot=tuple(_resolve(base_dir, f) for f in bgp_snapshot)),
        target_options=options,
        warnings=tuple(warnings),
    )
    return config, []


def _choice_check(r: _Reader, choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if isinstance(value, str) and value in choices:
            return value
        r.add(where, f"must be one of {', '.join(choices)}")
        return _INVALID  # type: ignore[no-any-return]

    return check


def _groups(
    r: _Reader,
    parent: Mapping[str, Any],
    key: str,
    default: dict[str, tuple[_T, ...]],
    check: Callable[[Any, str], _T],
    *,
    what: str,
    path: str = "",
    groups: set[str] | None = None,
) -> dict[str, tuple[_T, ...]]:
    """A table of group name -> list. With `groups`, every name must be an upstream group.

    A default (the key absent) keeps only the groups that exist, so a config with its own [upstreams]
    is not blamed for the shipped suffixes or borders of groups it does not have.
    """
    where = _join(path, key)
    if key not in parent:
        if groups is None:
            return default
        return {g: v for g, v in default.items() if g in groups}
    table = parent[key]
    if not isinstance(table, dict):
        r.add(where, f"must be a table of group = [{what}, ...]")
        return {}
    out: dict[str, tuple[_T, ...]] = {}
    for group in table:
        gpath = f"{where}.{group}"
        if group in RESERVED_GROUPS:
            r.add(gpath, f"{group!r} is a reserved tag and cannot be a group name")
            continue
        if not _GROUP_NAME.match(group):
            r.add(gpath, "must be lowercase letters, digits and _ (a label value)")
            continue
        if groups is not None and group not in groups:
            r.add(gpath, f"{group!r} is not a group in [upstreams]")
            continue
        items = r.items(table, group, where, (), check, nonempty=True)
        if items is _INVALID:
            continue
        out[group] = items
    return out


def _targets(
    r: _Reader, data: Mapping[str, Any], prefixes: tuple[str, ...]
) -> tuple[tuple[Target, ...], dict[str, TargetOptions]]:
    raw = data.get("targets", [])
    if not isinstance(raw, list):
        r.add("targets", 'must be an array of tables: [[targets]] address = "..."')
        return (), {}
    nets = [ipaddress.IPv4Network(p) for p in prefixes] if prefixes is not _INVALID else None
    targets: list[Target] = []
    options: dict[str, TargetOptions] = {}
    seen_addr: dict[str, int] = {}
    seen_name: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"targets[{index}]"
        if not isinstance(item, dict):
            r.add(path, "must be a table with an address")
            continue
        r.unknown(item, _KNOWN["targets"], path)
        if "address" not in item:
            r.add(f"{path}.address", "missing; every target needs an address")
            continue
        address = r.ipv4(item["address"], f"{path}.address")
        name = r.string(item, "name", path, "")
        protocol = r.choice(item, "protocol", path, "", TRACE_PROTOCOLS) if "protocol" in item else None
        port = r.integer(item, "port", path, 0, ge=1, le=65535) if "port" in item else None
        ping_protocols = (
            r.items(item, "ping_protocols", path, (), _choice_check(r, PING_PROTOCOLS), nonempty=True)
            if "ping_protocols" in item
            else None
        )
        if address is _INVALID:
            continue
        if nets is not None and not any(ipaddress.IPv4Address(address) in n for n in nets):
            r.add(f"{path}.address", f"{address} is outside destination.prefixes")
        if address in seen_addr:
            r.add(f"{path}.address", f"{address} is already targets[{seen_addr[address]}]")
        seen_addr.setdefault(address, index)
        if name not in ("", _INVALID):
            if name in seen_name:
                r.add(f"{path}.name", f"{name!r} is already the name of targets[{seen_name[name]}]")
            seen_name.setdefault(name, index)
        targets.append(Target(address=address, name=name if name is not _INVALID else ""))
        if protocol is not None or port is not None or ping_protocols is not None:
            options[address] = TargetOptions(protocol=protocol, port=port, ping_protocols=ping_protocols)
    return tuple(targets), options
