"""The one prober signature: `async def probe(engine, spec) -> outcome`.

Like blackbox_exporter's `ProbeFn` (prober/prober.go): every prober takes the shared probe engine (the
sockets, the budget, the session table) and a `ProbeSpec`, and returns a result value; a timeout or an
unreachable target is a result, never an exception (DESIGN.md idea 7). The map from name to prober is
`agent.probers.PROBERS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.model import Path, PingResult, Protocol
from agent.net.engine import ProbeEngine


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
    grace_s: float = 0.5  # the longest wait for silent hops once the destination answered
    grace_rtt_factor: float = 3.0  # ... shortened to this many times the trace's slowest RTT (0: off)
    retries: int = 1
    gap_limit: int = 5
    lookahead: int | None = None  # TraceParams.lookahead: new TTLs at most this far past the last answer
    packet_size: int = 0  # 0: the protocol's default


ProbeOutcome = PingResult | tuple[Path, ...]
Prober = Callable[[ProbeEngine, ProbeSpec], Awaitable[ProbeOutcome]]
