"""Metric families, their samples and the registry the HTTP server encodes: the agent's own, so that
`nkprobe run` does not import prometheus_client (issue 25: with the urllib, wsgiref, hashlib and platform
modules it loads, it cost the agent 0.6 MiB resident, measured by bench/footprint.py, for a few classes).

The shapes follow client_python's custom-collector API (`metrics_core.py`), so a collector reads the same
whichever library encodes it: a family has `name`, `documentation`, `type`, `unit` and `samples`; a sample
is (name, labels, value, timestamp, exemplar, native_histogram). The tests encode our families with
prometheus_client as well and compare the bytes (tests/exporter/test_exposition.py). A counter's name is
kept without `_total` and its samples carry it; an info family's samples end in `_info` (OpenMetrics 1.0,
"Counter" and "Info").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    # Never set by the agent; present so that prometheus_client's encoders (the tests' oracle, the fleet
    # simulator) read our samples as their own.
    exemplar: None = None
    native_histogram: None = None


class MetricFamily:
    """One metric family of type `type` ("gauge", "counter", "histogram" or "info") and its samples."""

    __slots__ = ("_labelnames", "blocks", "documentation", "name", "samples", "type", "unit")

    def __init__(self, name: str, documentation: str, type: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.type = type
        self.unit = ""
        self.samples: list[Sample] = []
        # The lines of `samples` as the text formats write them by default (no timestamp, escaping
        # "underscores"), rendered beforehand in runs of any length, or None: the agent's encoders
        # (agent.exporter.exposition) write them instead of rendering each sample again, the collector
        # keeps them per target (issue 25: a census page is 35k samples); other encoders read `samples`.
        self.blocks: list[str] | None = None
        self._labelnames = tuple(labels)

    def _labels(self, values: Sequence[str]) -> dict[str, str]:
        return dict(zip(self._labelnames, values, strict=True))

    def __repr__(self) -> str:
        return f"MetricFamily({self.name!r}, {self.type!r}, {self.samples!r})"


class GaugeFamily(MetricFamily):
    def __init__(
        self, name: str, documentation: str, value: float | None = None, labels: Sequence[str] = ()
    ) -> None:
        super().__init__(name, documentation, "gauge", labels)
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.samples.append(Sample(self.name, self._labels(labels), value))


class CounterFamily(MetricFamily):
    def __init__(
        self, name: str, documentation: str, value: float | None = None, labels: Sequence[str] = ()
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, "counter", labels)
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.samples.append(Sample(self.name + "_total", self._labels(labels), value))


class HistogramFamily(MetricFamily):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, "histogram", labels)

    def add_metric(
        self, labels: Sequence[str], buckets: Sequence[tuple[str, float]], sum_value: float
    ) -> None:
        """`buckets`: (upper bound as written in `le`, cumulative count), ascending, "+Inf" last, which
        is also the count."""
        for bound, count in buckets:
            self.samples.append(Sample(self.name + "_bucket", {**self._labels(labels), "le": bound}, count))
        self.samples.append(Sample(self.name + "_count", self._labels(labels), buckets[-1][1]))
        self.samples.append(Sample(self.name + "_sum", self._labels(labels), sum_value))


class InfoFamily(MetricFamily):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, "info", labels)

    def add_metric(self, labels: Sequence[str], value: Mapping[str, str]) -> None:
        self.samples.append(Sample(self.name + "_info", {**self._labels(labels), **value}, 1.0))


class Collector(Protocol):
    def collect(self) -> Iterable[MetricFamily]: ...


class Registry:
    """The collectors of one /metrics page, collected in the order they were registered."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect(self) -> Iterator[MetricFamily]:
        for collector in self._collectors:
            yield from collector.collect()
