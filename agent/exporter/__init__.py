"""Prometheus export: a Collector over the State snapshot (collector.py) and its HTTP server (server.py).

`build_registry(state)` gives the registry the server exposes: our collector plus the process collector.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from agent.bgp.view import BgpCheck
from agent.exporter.collector import SnapshotCollector
from agent.state import State


def build_registry(state: State, bgp: Callable[[], BgpCheck | None] = lambda: None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(state.snapshot, bgp))
    ProcessCollector(registry=registry)
    return registry
