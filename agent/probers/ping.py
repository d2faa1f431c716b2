"""The ICMP echo latency prober (RFC 792 echo / echo reply).

Our own raw-socket path rather than icmplib: it shares the process's one socket set, global packet budget
and kernel receive timestamps with the traceroutes, which icmplib's per-call sockets would not.
"""

from __future__ import annotations

from dataclasses import replace

from agent.model import PingResult, Protocol
from agent.net.engine import ProbeEngine
from agent.probers._latency import latency_probe
from agent.probers.base import ProbeSpec


async def probe(engine: ProbeEngine, spec: ProbeSpec) -> PingResult:
    """One echo request; the RTT to its echo reply, or a loss."""
    return await latency_probe(engine, replace(spec, protocol=Protocol.ICMP, port=None))
