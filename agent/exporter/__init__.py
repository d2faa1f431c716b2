"""Prometheus export: a Collector over the Results snapshot (collector.py) and its HTTP server (server.py).

`build_registry(results)` gives the registry the server exposes: our collector plus the process
collector (process.py), encoded by exposition.py. The families are our own (families.py): the agent does
not import prometheus_client. Components with a status of their own (the BGP check in use, the history
writer, the live BGP view) are read at scrape time through the callables given; so is, with `vantage`,
the agent's verdict on its own vantage point (vantage.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.exporter.collector import HistoryStatusOf, Identity, SnapshotCollector
from agent.exporter.families import Registry
from agent.exporter.process import ProcessCollector
from agent.exporter.vantage import VantageCollector
from agent.results import Results
from agent.vantage import VantageHealth

if TYPE_CHECKING:
    from agent.bgp.feed import LiveStatus
    from agent.bgp.view import BgpCheck


def build_registry(
    results: Results,
    bgp: Callable[[], BgpCheck | None] = lambda: None,
    history: HistoryStatusOf = lambda: None,
    live: Callable[[], LiveStatus | None] = lambda: None,
    *,
    identity: Callable[[], Identity] = Identity,
    vantage: VantageHealth | None = None,
) -> Registry:
    registry = Registry()
    registry.register(SnapshotCollector(results.snapshot, bgp, history, live, identity))
    if vantage is not None:
        registry.register(VantageCollector(vantage))
    registry.register(ProcessCollector())
    return registry
