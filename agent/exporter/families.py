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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

    __slots__ = ("_labelnames", "_later", "_samples", "blocks", "documentation", "name", "type", "unit")

    def __init__(self, name: str, documentation: str, type: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.type = type
        self.unit = ""
        self._samples: list[Sample] = []
        # A family is given its samples (add_metric) or its lines (set_lines), not both. Lines: what the
        # text formats write for the samples by default (no timestamp, escaping "underscores"), rendered
        # beforehand in runs of any length; the agent's encoders (agent.exporter.exposition) write them
        # as they are, and the samples are made only if something reads them (another escaping, another
        # encoder). The collector keeps a target's lines from scrape to scrape (issue 25: a census page is
        # 35k samples; rendered anew, 150 ms of CPU a scrape; kept as samples, 13 MiB resident).
        self.blocks: list[str] | None = None
        self._later: Callable[[], list[Sample]] | None = None
        self._labelnames = tuple(labels)

    @property
    def samples(self) -> list[Sample]:
        if self._later is not None:
            later, self._later = self._later, None
            self._samples = later()
        return self._samples

    def set_lines(self, lines: list[str], samples: Callable[[], list[Sample]]) -> None:
        """The family's samples given as their `lines` (see `blocks`); `samples()` makes them if read."""
        assert not self._samples, "a family is given its samples or its lines, not both"
        self.blocks = lines
        self._later = samples

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
        self._samples.append(Sample(self.name, self._labels(labels), value))


class CounterFamily(MetricFamily):
    def __init__(
        self, name: str, documentation: str, value: float | None = None, labels: Sequence[str] = ()
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, "counter", labels)
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._samples.append(Sample(self.name + "_total", self._labels(labels), value))


class HistogramFamily(MetricFamily):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, "histogram", labels)

    def add_metric(
        self, labels: Sequence[str], buckets: Sequence[tuple[str, float]], sum_value: float
    ) -> None:
        """`buckets`: (upper bound as written in `le`, cumulative count), ascending, "+Inf" last, which
        is also the count."""
        for bound, count in buckets:
            self._samples.append(Sample(self.name + "_bucket", {**self._labels(labels), "le": bound}, count))
        self._samples.append(Sample(self.name + "_count", self._labels(labels), buckets[-1][1]))
        self._samples.append(Sample(self.name + "_sum", self._labels(labels), sum_value))


class InfoFamily(MetricFamily):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, "info", labels)

    def add_metric(self, labels: Sequence[str], value: Mapping[str, str]) -> None:
        self._samples.append(Sample(self.name + "_info", {**self._labels(labels), **value}, 1.0))


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
