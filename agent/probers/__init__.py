"""Probers: one file per prober, one signature (agent.probers.base.Prober), one map.

Adding a prober touches one new file, its test, one line in `PROBERS` and one config section
(blackbox_exporter's prober map, prober/prober.go). `PROBERS` is the dispatch: `nkprobe ping`, `nkprobe
trace` and the agent all reach a prober through `latency` or `trace` below, never by importing its
module (the agent's scheduled latency probes use the latency probers' code as a callback per probe
rather than a task: `Pinger`). Each kind of probe has one result type: a latency probe gives one
`PingResult`, a trace one `Path` per flow. The names of the latency probers are the values `[ping]
protocols` accepts (tests check that config and map agree).
"""

from __future__ import annotations

from agent.model import Path, PingResult
from agent.net.engine import ProbeEngine
from agent.probers import ping, tcp, traceroute
from agent.probers._latency import PingDone, Pinger
from agent.probers.base import ProbeOutcome, Prober, ProbeSpec

PROBERS: dict[str, Prober] = {
    "icmp": ping.probe,  # ICMP echo latency
    "tcp": tcp.probe,  # TCP SYN latency
    "traceroute": traceroute.probe,  # Paris traceroute (protocol in the spec)
}
LATENCY_PROBERS = ("icmp", "tcp")
TRACE_PROBER = "traceroute"


async def latency(engine: ProbeEngine, spec: ProbeSpec) -> PingResult:
    """One latency probe of `spec.protocol` (icmp or tcp), by the map."""
    if spec.protocol.value not in LATENCY_PROBERS:
        raise ValueError(f"no latency prober for {spec.protocol.value}; the protocols are {LATENCY_PROBERS}")
    result = await PROBERS[spec.protocol.value](engine, spec)
    if not isinstance(result, PingResult):  # a mis-wired map is our bug, not a probe outcome
        raise TypeError(f"prober {spec.protocol.value!r} returned {type(result).__name__}, not PingResult")
    return result


async def trace(engine: ProbeEngine, spec: ProbeSpec) -> tuple[Path, ...]:
    """`spec.flows` Paris traceroutes of `spec.protocol`, by the map: one Path per flow."""
    result = await PROBERS[TRACE_PROBER](engine, spec)
    if not isinstance(result, tuple):
        raise TypeError(f"prober {TRACE_PROBER!r} returned {type(result).__name__}, not a tuple of paths")
    return result


__all__ = [
    "LATENCY_PROBERS",
    "PROBERS",
    "PingDone",
    "Pinger",
    "TRACE_PROBER",
    "ProbeOutcome",
    "ProbeSpec",
    "Prober",
    "latency",
    "trace",
]
