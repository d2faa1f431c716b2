"""Prometheus export: a Collector over the Results snapshot (collector.py) and its HTTP server (server.py).

`build_registry(results)` gives the registry the server exposes: our collector plus the process
collector. Components with a status of their own (the BGP check in use, the history writer, the live BGP
view) are read at scrape time through the callables given; so is, with `vantage`, the agent's verdict on
its own vantage point (vantage.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from agent.bgp.view import BgpCheck
from agent.exporter.collector import HistoryStatusOf, Identity, SnapshotCollector
from agent.exporter.vantage import VantageCollector
from agent.results import Results
from agent.vantage import VantageHealth

if TYPE_CHECKING:
    from agent.bgp.feed import LiveStatus


def build_registry(
    results: Results,
    bgp: Callable[[], BgpCheck | None] = lambda: None,
    history: HistoryStatusOf = lambda: None,
    live: Callable[[], LiveStatus | None] = lambda: None,
    *,
    identity: Callable[[], Identity] = Identity,
    vantage: VantageHealth | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(results.snapshot, bgp, history, live, identity))
    if vantage is not None:
        registry.register(VantageCollector(vantage))
    ProcessCollector(registry=registry)
    return registry
