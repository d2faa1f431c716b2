"""The one prober signature: `async def probe(engine, spec) -> outcome`.

Like blackbox_exporter's `ProbeFn` (prober/prober.go): every prober takes the shared probe engine (the
sockets, the budget, the session table) and a `ProbeSpec`, and returns a result value; a timeout or an
unreachable target is a result, never an exception (DESIGN.md idea 7). The map from name to prober is
`agent.probers.PROBERS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.model import Path, PingResult, Protocol
from agent.net.engine import ProbeEngine

if TYPE_CHECKING:
    from agent.config import Config


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """What to probe and how. Latency probers read the first block; the traceroute prober all of it."""

    target: str  # an address already checked against the allowlist
    protocol: Protocol
    port: int | None = None  # UDP/TCP destination port; None: the protocol's default
    timeout_s: float = 2.0
    ttl: int = 64  # latency probes
    # traceroute
    max_hops: int = 32
    flows: int = 1
    first_flow: int = 0  # RIPE Atlas paris_id of the first flow
    grace_s: float = 2.0  # the longest wait for silent hops once the destination answered
    near_factor: float = 3.0  # the silent-hop rule (agent.trace.session): near_factor x the nearest
    silent_min_s: float = 0.05  # later answer's RTT, within [silent_min_s, silent_max_s]
    silent_max_s: float = 1.0
    retries: int = 1
    gap_limit: int = 5
    lookahead: int | None = None  # TraceParams.lookahead: new TTLs at most this far past the last answer
    packet_size: int = 0  # 0: the protocol's default


def trace_spec(
    config: Config,
    target: str,
    *,
    flows: int,
    first_flow: int = 0,
    protocol: Protocol | None = None,
    port: int | None = None,
    max_hops: int | None = None,
) -> ProbeSpec:
    """The one place a trace's ProbeSpec is built from the config (`nkprobe trace` and the agent).

    `protocol`, `port` and `max_hops` are command-line overrides (None: the config's, per target).
    """
    proto = protocol or Protocol(config.trace_protocol_for(target))
    if proto is Protocol.ICMP:
        port = None
    elif port is None:
        port = config.trace_port_for(target, proto.value)
    t = config.trace
    return ProbeSpec(
        target=target,
        protocol=proto,
        port=port,
        timeout_s=t.timeout_s,
        max_hops=max_hops or t.max_hops,
        flows=flows,
        first_flow=first_flow,
        grace_s=t.grace_s,
        near_factor=t.near_factor,
        silent_min_s=t.silent_min_s,
        silent_max_s=t.silent_max_s,
        retries=t.retries,
        gap_limit=t.gap_limit,
        lookahead=t.lookahead,
    )


ProbeOutcome = PingResult | tuple[Path, ...]
Prober = Callable[[ProbeEngine, ProbeSpec], Awaitable[ProbeOutcome]]
