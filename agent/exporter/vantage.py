"""nkprobe_vantage_healthy and nkprobe_vantage_reason: the agent's judgement of its own vantage point
(agent.vantage), asked at scrape time as smokeping_prober's collector asks its pinger."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from agent.exporter.families import GaugeFamily, MetricFamily
from agent.vantage import REASONS, VantageHealth


class VantageCollector:
    def __init__(self, vantage: VantageHealth, clock: Callable[[], float] = time.monotonic) -> None:
        self._vantage = vantage
        self._clock = clock

    def describe(self) -> list[MetricFamily]:
        return []  # as SnapshotCollector.describe

    def collect(self) -> Iterator[MetricFamily]:
        verdict = self._vantage.verdict(self._clock())
        healthy = GaugeFamily(
            "nkprobe_vantage_healthy",
            "1 if this vantage point can speak for the destination (its route, link and first hops work, "
            "or a target answers); 0 if its own side fails. Fleet alerts count only healthy agents.",
        )
        healthy.add_metric([], 1.0 if verdict.healthy else 0.0)
        yield healthy
        reason = GaugeFamily(
            "nkprobe_vantage_reason",
            "1 for the reason of the current vantage verdict (ok, no_route, link_down, local_hops_silent), "
            "0 for the others.",
            labels=["reason"],
        )
        for value in REASONS:
            reason.add_metric([value], 1.0 if value == verdict.reason else 0.0)
        yield reason
