"""Prometheus export: a Collector over the Results snapshot (collector.py) and its HTTP server (server.py).

`build_registry(results)` gives the registry the server exposes: our collector plus the process
collector. Components with a status of their own (the BGP check in use, the history writer) are read at
scrape time through the callables given.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from agent.bgp.view import BgpCheck
from agent.exporter.collector import HistoryStatusOf, SnapshotCollector
from agent.results import Results


def build_registry(
    results: Results,
    bgp: Callable[[], BgpCheck | None] = lambda: None,
    history: HistoryStatusOf = lambda: None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(results.snapshot, bgp, history))
    ProcessCollector(registry=registry)
    return registry
