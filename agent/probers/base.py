"""The one prober signature: `async def probe(engine, spec) -> outcome`.

Like blackbox_exporter's `ProbeFn` (prober/prober.go): every prober takes the shared probe engine (the
sockets, the budget, the session table) and a `ProbeSpec`, and returns a result value; a timeout or an
unreachable target is a result, never an exception (README "Commands": exit 0 either way). The map from name
to prober is `agent.probers.PROBERS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.model import Path, PingResult, Protocol, record
from agent.net.engine import ProbeEngine
from agent.trace.settings import TraceSettings, with_settings

if TYPE_CHECKING:
    from agent.config import Config, TargetConfig


@record(slots=True)
class ProbeSpec(TraceSettings):
    """What to probe and how: a target and, for a trace, its flows and `TraceSettings`
    (agent.trace.settings). Latency probers read target, protocol, port, timeout_s and ttl."""

    target: str  # an address already checked against the allowlist
    protocol: Protocol
    port: int | None = None  # UDP/TCP destination port; None: the protocol's default
    ttl: int = 64  # latency probes
    flows: int = 1  # traceroute: this many flows, ids first_flow, first_flow + 1, ...
    first_flow: int = 0  # RIPE Atlas paris_id of the first flow


def trace_spec(
    config: Config,
    target: TargetConfig,
    *,
    flows: int,
    first_flow: int = 0,
    port: int | None = None,
    max_hops: int | None = None,
) -> ProbeSpec:
    """The one place a trace's ProbeSpec is built from the config (`nkprobe trace` and the agent).

    `target` is the target's record (`Config.targets`, or `Config.target` with `--protocol`); `port`
    and `max_hops` are command-line overrides (None: the record's port, the config's max_hops).
    """
    proto = Protocol(target.trace_protocol)
    if proto is Protocol.ICMP:
        port = None
    elif port is None:
        port = target.trace_port
    overrides = {} if max_hops is None else {"max_hops": max_hops}
    return with_settings(
        ProbeSpec, config.trace, **overrides, target=target.address, protocol=proto, port=port, flows=flows,
        first_flow=first_flow,
    )  # fmt: skip


ProbeOutcome = PingResult | tuple[Path, ...]
Prober = Callable[[ProbeEngine, ProbeSpec], Awaitable[ProbeOutcome]]
