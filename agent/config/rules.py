"""The rules between keys: what no single key's declaration can say (agent.config.keys), checked once
every key is read, on the values that passed (a rule passes over a value that failed its own check, so
one mistake is reported once), and the warnings of a valid config.

`values` is what the section reader read (agent.config.sections): a table per section, key -> value,
and for [[targets]] a table per entry (None for one that could not be read).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from agent.config.checks import fmt
from agent.config.model import Config

Report = Callable[[str, str], None]  # (key path, message)
Values = Mapping[str, Any]


def check(values: Values, report: Report) -> None:
    """Apply every rule."""
    for rule in RULES:
        rule(values, report)


def trace_stops(values: Values, report: Report) -> None:
    """[trace]: the settings that end a trace agree with each other (agent.trace.session)."""
    trace = values["trace"]
    gap, hops = trace.get("gap_limit"), trace.get("max_hops")
    if gap is not None and hops is not None and gap > hops:
        report("trace.gap_limit", f"must be <= trace.max_hops ({hops})")
    low, high = trace.get("silent_min_s"), trace.get("silent_max_s")
    if low is not None and high is not None and low > high:
        report("trace.silent_min_s", f"must be <= trace.silent_max_s ({fmt(high)})")
    ahead = trace.get("lookahead")  # None: not set, so gap_limit (TraceSection)
    if gap is not None and ahead is not None and ahead < gap:
        # agent.trace.session: a silent stretch of gap_limit hops must be probed for the gap rule to stop
        report(
            "trace.lookahead", f"must be >= trace.gap_limit ({gap}), or a silent stretch never ends a trace"
        )


def destination_disjoint(values: Values, report: Report) -> None:
    """destination.prefixes: each address listed once."""
    nets = _destination(values) or []
    for i, a in enumerate(nets):
        for b in nets[:i]:
            if a.overlaps(b):
                report(f"destination.prefixes[{i}]", f"{a} overlaps {b}; list each address once")


def upstream_asns(values: Values, report: Report) -> None:
    """[upstreams]: an ASN in one group at most, and never the destination's."""
    owner: dict[int, str] = {}
    for group, asns in values.get("upstreams", {}).items():
        for index, asn in enumerate(asns):
            if asn in owner:
                report(
                    f"upstreams.{group}[{index}]",
                    f"AS{asn} is already in group {owner[asn]}; an ASN may be in only one group",
                )
            else:
                owner[asn] = group
    dest = values["destination"].get("asn")
    if dest is not None and dest in owner:
        report(f"upstreams.{owner[dest]}", f"AS{dest} is destination.asn; it cannot be an upstream")


def borders(values: Values, report: Report) -> None:
    """[borders]: an address is the border of one group, and outside the destination."""
    nets = _destination(values)
    seen: dict[str, str] = {}
    for group, addresses in values.get("borders", {}).items():
        for index, address in enumerate(addresses):
            where = f"borders.{group}[{index}]"
            if address in seen:
                report(where, f"{address} is already a border of {seen[address]}")
            seen[address] = group
            if nets is not None and any(ipaddress.IPv4Address(address) in n for n in nets):
                report(where, f"{address} is inside destination.prefixes, not an upstream")


def exchanges_outside_destination(values: Values, report: Report) -> None:
    """classify.exchange_prefixes: an exchange LAN lies outside the destination."""
    nets = _destination(values)
    lans = values["classify"].get("exchange_prefixes")
    if nets is None or lans is None:
        return
    for index, text in enumerate(lans):
        lan = ipaddress.IPv4Network(text)
        for dest in nets:
            if lan.overlaps(dest):
                report(
                    f"classify.exchange_prefixes[{index}]",
                    f"{lan} overlaps destination.prefixes ({dest}); an exchange LAN lies outside it",
                )


def targets(values: Values, report: Report) -> None:
    """[[targets]]: inside the destination (the allowlist), each address and name once."""
    nets = _destination(values)
    seen_address: dict[str, int] = {}
    seen_name: dict[str, int] = {}
    for index, entry in enumerate(values.get("targets", ())):
        address = entry.get("address") if entry is not None else None
        if address is None:
            continue
        where = f"targets[{index}]"
        if nets is not None and not any(ipaddress.IPv4Address(address) in n for n in nets):
            report(f"{where}.address", f"{address} is outside destination.prefixes")
        if address in seen_address:
            report(f"{where}.address", f"{address} is already targets[{seen_address[address]}]")
        seen_address.setdefault(address, index)
        name = entry.get("name")
        if name:
            if name in seen_name:
                report(f"{where}.name", f"{name!r} is already the name of targets[{seen_name[name]}]")
            seen_name.setdefault(name, index)


def _destination(values: Values) -> list[ipaddress.IPv4Network] | None:
    """The destination's prefixes, None if they failed their check."""
    prefixes = values["destination"].get("prefixes")
    return None if prefixes is None else [ipaddress.IPv4Network(p) for p in prefixes]


RULES: tuple[Callable[[Values, Report], None], ...] = (
    trace_stops,
    destination_disjoint,
    upstream_asns,
    borders,
    exchanges_outside_destination,
    targets,
)


def warnings(config: Config) -> tuple[str, ...]:
    """What is legal but probably unintended: pings alone above the packet budget."""
    if not config.targets:
        return ()
    per_round = sum(len(t.ping_protocols) for t in config.targets)
    interval, max_pps = config.ping.interval_s, config.agent.max_pps
    pps = per_round / interval
    if pps <= max_pps:
        return ()
    return (
        f"ping.interval_s: {per_round} pings every {fmt(interval)} s need {pps:.3g} packets/s, "
        f"more than agent.max_pps ({fmt(max_pps)}); pings will be delayed and traces starved",
    )
