"""The TCP SYN latency prober: the RTT from a SYN to the target's SYN-ACK (port open) or RST (closed).

Most of the destination ignores ICMP echo (the 2016 DNS zone leak, the 2021 and 2025 scans; README "The
lab"), and a SYN to an open port is the most reliable way in. The kernel resets the SYN-ACK it gets for our
socketless SYN (see agent.net.sockets), so no half-open connection is left behind at the target.
"""

from __future__ import annotations

from dataclasses import replace

from agent.model import PingResult, Protocol
from agent.net.engine import ProbeEngine
from agent.probers._latency import latency_probe
from agent.probers.base import ProbeSpec

DEFAULT_PORT = 80


async def probe(engine: ProbeEngine, spec: ProbeSpec) -> PingResult:
    """One SYN to `spec.port` (default 80); the RTT to the SYN-ACK or RST, or a loss."""
    port = DEFAULT_PORT if spec.port is None else spec.port
    return await latency_probe(engine, replace(spec, protocol=Protocol.TCP, port=port))
