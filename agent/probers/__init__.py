"""Probers: one file per prober, one signature (agent.probers.base.Prober), one map.

Adding a prober touches one new file, its test, one line in `PROBERS` and one config section
(DESIGN.md idea 1, after blackbox_exporter's prober map). The names of the latency probers are the
values `[ping] protocols` accepts; tests check that config and map agree.
"""

from __future__ import annotations

from agent.probers import ping, tcp, traceroute
from agent.probers.base import ProbeOutcome, Prober, ProbeSpec

PROBERS: dict[str, Prober] = {
    "icmp": ping.probe,  # ICMP echo latency
    "tcp": tcp.probe,  # TCP SYN latency
    "traceroute": traceroute.probe,  # Paris traceroute (protocol in the spec)
}
LATENCY_PROBERS = ("icmp", "tcp")

__all__ = ["LATENCY_PROBERS", "PROBERS", "ProbeOutcome", "ProbeSpec", "Prober"]
