"""Our exposition (agent/exporter/exposition.py, process.py) against prometheus_client's, byte for byte:
the same families give the same text 0.0.4 and OpenMetrics bytes and the same Content-Type for every
Accept header; the process_* metrics are client_python's on the same procfs."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import ProcessCollector as TheirProcessCollector
from prometheus_client import exposition as theirs
from prometheus_client.openmetrics import exposition as their_openmetrics
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from agent.bgp.feed import LiveFeed
from agent.bgp.live import LiveView
from agent.exporter import build_registry
from agent.exporter.exposition import choose_encoder, format_value, openmetrics_format, text_format
from agent.exporter.families import (
    CounterFamily,
    GaugeFamily,
    HistogramFamily,
    InfoFamily,
    MetricFamily,
)
from agent.exporter.process import ProcessCollector
from agent.model import PingResult, Protocol
from agent.vantage import VantageHealth
from tests.support.sample_results import make_state


class Fixed:
    """Families collected once, so both libraries encode the very same samples."""

    def __init__(self, families: list[MetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[MetricFamily]:
        return iter(self.families)


def odd_families() -> list[MetricFamily]:
    """What the agent never writes but a label value or help text could hold: quotes, backslashes,
    newlines, non-ASCII; values at the edges of the number format."""
    gauge = GaugeFamily("x_odd", 'Help with "quotes", a \\ backslash\nand a newline.', labels=["a", "b"])
    for i, value in enumerate([0.0, -0.0, 1, 1e-7, 123456.0, 1234567.0, 1e21, -5e9, math.nan, math.inf]):
        gauge.add_metric([f'v"{i}\\', "ünï\ncode"], value)
    counter = CounterFamily("x_things_total", "Counted.", labels=["kind"])
    counter.add_metric(["a"], 3)
    info = InfoFamily("x_build", "Info.", labels=["a"])
    info.add_metric(["1"], {"files": "a.txt,b.gz"})
    histogram = HistogramFamily("x_seconds", "Times.", labels=["p"])
    histogram.add_metric(["icmp"], [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)], 2.5)
    return [gauge, counter, info, histogram, GaugeFamily("x_bare", "No labels.", 7.0)]


def agent_families() -> list[MetricFamily]:
    """Every family of a running agent's page: results with data, the live BGP view, the vantage
    verdict, the process metrics."""
    state = make_state()
    state.record_ping(PingResult("198.19.176.10", Protocol.ICMP, 0.0, 0.150, 60))
    state.record_packets("tcp", 40)
    state.record_trace("tcp", 2.5)
    groups = {"china_unicom": [4837], "transtelecom": [20485]}
    feed = LiveFeed(
        LiveView(131279, ["198.19.176.0/24"], groups),
        prefixes=("198.19.176.0/24",),
        ris_live_url="ws://127.0.0.1:9/",
        ripestat_url="http://127.0.0.1:9/",
        refresh_s=3600,
        stall_s=60,
    )
    vantage = VantageHealth(answer_window_s=10, trace_window_s=150)
    return list(build_registry(state, live=feed.status, vantage=vantage).collect())


ACCEPT = [
    "",
    "*/*",
    "text/plain",
    "text/plain;version=0.0.4",
    "text/plain; version=1.0.0",
    "text/plain;version=1.0.0;escaping=dots",
    # Prometheus 2.x's scrape header, then 3.x's default (with the UTF-8 names it allows).
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,"
    "*/*;q=0.1",
    "application/openmetrics-text",
    "application/openmetrics-text; version=0.0.1",
    "application/openmetrics-text;version=0.0.1,text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=1.0.0;escaping=nonsense",
    "application/openmetrics-text;version=2.0.0",
    "application/json, text/html",
]


@pytest.mark.parametrize("which", ["agent", "odd"])
def test_the_same_bytes_and_content_type_as_prometheus_client_for_every_accept_header(which: str) -> None:
    page = Fixed(agent_families() if which == "agent" else odd_families())
    assert text_format(page) == theirs.generate_latest(page)
    assert openmetrics_format(page) == their_openmetrics.generate_latest(page)
    for accept in ACCEPT:
        ours, our_type = choose_encoder(accept)
        their_encoder, their_type = theirs.choose_encoder(accept)
        assert our_type == their_type, accept
        assert ours(page) == their_encoder(page), accept


def test_every_name_the_agent_writes_is_a_legacy_prometheus_name() -> None:
    # exposition.py escapes names only as legacy names need (module docstring); a name outside
    # [a-zA-Z_][a-zA-Z0-9_]* would need more.
    legal = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
    for family in agent_families():
        assert legal.fullmatch(family.name), family.name
        for s in family.samples:
            assert legal.fullmatch(s.name) and all(legal.fullmatch(k) for k in s.labels), s


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**60), 2**60).map(float))
def test_values_are_written_as_client_python_writes_them(value: float) -> None:
    assert format_value(value) == floatToGoString(value)


def fake_proc(root: Path) -> Path:
    (root / "self" / "fd").mkdir(parents=True)
    (root / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    # The command name may hold spaces and parentheses: fields count from the last ")".
    fields = ["S"] + [str(i) for i in range(2, 60)]
    fields[11], fields[12], fields[19], fields[20], fields[21] = "1234", "567", "98765", "123456789", "4321"
    (root / "self" / "stat").write_text(f"42 (nk probe (x)) {' '.join(fields)}\n")
    (root / "self" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            1024                 524288               files     \n"
    )
    for fd in range(5):
        (root / "self" / "fd" / str(fd)).touch()
    return root


def test_process_metrics_are_client_pythons_on_the_same_procfs(tmp_path: Path) -> None:
    proc = str(fake_proc(tmp_path))
    registry = CollectorRegistry(auto_describe=False)
    TheirProcessCollector(proc=proc, registry=registry)
    ours = Fixed(list(ProcessCollector(proc=proc).collect()))
    assert [f.name for f in ours.families] == [
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
    ]
    assert text_format(ours) == theirs.generate_latest(registry)
    assert openmetrics_format(ours) == their_openmetrics.generate_latest(registry)


def test_process_metrics_of_this_process_and_none_without_proc(tmp_path: Path) -> None:
    values = {f.name: f.samples[0].value for f in ProcessCollector().collect()}
    assert values["process_resident_memory_bytes"] > 1e6
    assert abs(values["process_start_time_seconds"] - time.time()) < 86400 * 30
    assert values["process_open_fds"] == len(os.listdir("/proc/self/fd"))
    assert list(ProcessCollector(proc=str(tmp_path / "none")).collect()) == []
