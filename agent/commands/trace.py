"""`nkprobe trace TARGET`: Paris traceroute(s) with reverse names, AS numbers, RTTs and the upstream tag.

Readable output: one line per hop (address, reverse name, AS, RTTs, reply codes like traceroute's !H !N
!X), then the upstream tag and the evidence for it. `--json`: one RIPE Atlas traceroute result (an array
of them with --flows N), with our additions (CONTRACT.md "Traceroute JSON"). An unreachable target is a
result: exit 0 either way.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.model import Classification, Path, Reply

PROTOCOLS = ("icmp", "udp", "tcp")
MAX_LOOKUPS = 128  # distinct hop addresses looked up per command (a 64-flow trace has far fewer)
RDNS_WORKERS = 16  # resolver threads: a trace's 15-30 hop addresses are looked up in two rounds at most


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="an address inside the destination prefixes")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="probe protocol (default: [trace] protocol)")
    parser.add_argument(
        "--port",
        type=int,
        help="UDP/TCP destination port (default: the target's port, else [trace] port for tcp, 33435 udp)",
    )
    parser.add_argument("--max-hops", type=int, help="highest TTL to probe (default: [trace] max_hops)")
    parser.add_argument("--flows", type=int, default=1, help="flows (Paris ids 0..N-1) to trace (default 1)")
    parser.add_argument(
        "--asn-file", action="append", default=[], metavar="PATH", help="IP-to-AS file (repeatable)"
    )
    parser.add_argument("--config", metavar="PATH", help="agent config (destination prefixes, max_pps)")
    parser.add_argument(
        "--no-dns", action="store_true", help="do not look up reverse names (default: [names] reverse_dns)"
    )
    parser.add_argument("--json", action="store_true", help="print RIPE Atlas traceroute JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from agent.asn import load_table
    from agent.classify import Settings, classify
    from agent.commands._probing import config_and_target, run_with_engine
    from agent.errors import UsageError
    from agent.model import Protocol
    from agent.net.engine import ProbeEngine
    from agent.probers import traceroute
    from agent.probers.base import trace_spec
    from agent.ripe import to_ripe

    if not 1 <= args.flows <= 64:
        raise UsageError("--flows takes 1..64")
    if args.max_hops is not None and not 1 <= args.max_hops <= 255:
        raise UsageError("--max-hops takes 1..255")
    config, target = config_and_target(args.config, args.target)
    protocol = Protocol(args.protocol or config.trace_protocol_for(target))
    if args.port is not None and (protocol is Protocol.ICMP or not 0 < args.port < 65536):
        raise UsageError("--port takes 1..65535 and only with --protocol udp or tcp")
    spec = trace_spec(
        config, target, flows=args.flows, protocol=protocol, port=args.port, max_hops=args.max_hops
    )
    # The AS table loads (from local files only) while nothing else is going on: before the sockets open.
    table = load_table(files=[*config.asn.files, *args.asn_file])
    settings = Settings.from_config(config)

    lookup_names = config.names.reverse_dns and not args.no_dns

    async def body(engine: ProbeEngine) -> tuple[tuple[Path, ...], dict[str, str]]:
        paths = await traceroute.probe(engine, spec)
        names: dict[str, str] = {}
        if lookup_names:
            addresses = {a for p in paths for h in p.hops for a in h.addresses}
            names = await reverse_names(addresses, config.names.timeout_s)
        return paths, names

    paths, names = run_with_engine(config, body)
    addresses = {a for p in paths for h in p.hops for a in h.addresses}
    asns = {a: table.asn(a) for a in addresses}
    tags = [classify(p, table.lookup, settings, names) for p in paths]
    if args.json:
        objs = [to_ripe(p, c, names, asns) for p, c in zip(paths, tags, strict=True)]
        print(json.dumps(objs if args.flows > 1 else objs[0]))
        return 0
    for i, (path, tag) in enumerate(zip(paths, tags, strict=True)):
        if i:
            print()
        print(render(path, tag, names, asns))
    return 0


async def reverse_names(addresses: set[str], timeout_s: float) -> dict[str, str]:
    """Reverse names of `addresses`, looked up in parallel after the trace, within `timeout_s` in all
    ([names] timeout_s): a slow resolver must not hold the answer hostage (the name is decoration; the
    tag never depends on DNS being up). agent.rdns runs the blocking lookups in daemon threads, so one
    stuck in gethostbyaddr (no timeout of its own) delays neither this answer nor the process's exit.
    A cache of its own: nothing outlives the command, and no future is shared across event loops."""
    from agent import rdns

    wanted = sorted(addresses)[:MAX_LOOKUPS]
    if not wanted:
        return {}
    cache = rdns.ReverseNames(
        rdns.system_resolver, max_in_flight=MAX_LOOKUPS, workers=min(RDNS_WORKERS, len(wanted))
    )
    try:
        return await cache.names(wanted, budget_s=timeout_s)
    finally:
        cache.close()  # idle workers exit; one stuck in the resolver is a daemon thread, left behind


def _reply_note(reply: Reply) -> str:
    err = reply.err
    return f" !{err}" if err else ""


def render(
    path: Path, tag: Classification | None, names: Mapping[str, str], asns: Mapping[str, int | None]
) -> str:
    """The readable form of one trace: a header, one line per hop, the outcome, the tag and evidence."""
    how = path.protocol.value + (f" port {path.dst_port}" if path.dst_port is not None else "")
    lines = [
        f"traceroute to {path.target} ({how}, paris id {path.flow_id}) from {path.src or '?'}, "
        f"{len(path.hops)} hops, {path.duration_s * 1000:.0f} ms"
    ]
    for hop in path.hops:
        if hop.silent:
            lines.append(f"{hop.ttl:3d}  " + "  ".join(["*"] * max(1, hop.probes_sent)))
            continue
        parts = []
        for address in hop.addresses:
            replies = [r for r in hop.replies if r.address == address]
            name = names.get(address)
            asn = asns.get(address)
            label = address + (f" ({name})" if name else "") + (f"  AS{asn}" if asn is not None else "")
            rtts = "  ".join(f"{r.rtt_s * 1000:.3f} ms{_reply_note(r)}" for r in replies)
            parts.append(f"{label}  {rtts}")
        lines.append(f"{hop.ttl:3d}  " + "\n     ".join(parts))
    outcome = "reached" if path.reached else f"not reached ({path.stop_reason})"
    lines.append(f"destination {outcome}")
    if tag is not None:
        border = ""
        if tag.border is not None:
            b = tag.border
            border = f" (border: hop {b.hop} {b.address}" + (f" AS{b.asn})" if b.asn is not None else ")")
        lines.append(f"upstream: {tag.upstream}{border}")
        if tag.as_path:
            lines.append("AS path: " + " ".join("?" if a is None else f"AS{a}" for a in tag.as_path))
        lines.extend(f"  - {e}" for e in tag.evidence)
    return "\n".join(lines)
