"""The path history's health flows one way: the writer counts its own errors and knows its own fault,
and the exporter reads its status at scrape time (nkprobe_fault{kind="history"}, nkprobe_history_*);
nothing copies it into the results."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.exporter import build_registry
from agent.history import HistoryWriter, PathChange
from agent.model import Target
from agent.results import Results

HISTORY = (
    "nkprobe_history_write_errors_total",
    "nkprobe_history_pending",
    "nkprobe_history_written_total",
    "nkprobe_history_dropped_total",
)


def results() -> Results:
    return Results(
        agent_name="t", version="0", targets=[Target("198.19.176.10")], ping_protocols=("icmp",),
        trace_protocol="tcp", tags=("china_unicom", "transtelecom", "other", "unknown"),
    )  # fmt: skip


def change(at: float) -> PathChange:
    return PathChange(
        time=at, agent="t", target="198.19.176.10", prefix="198.19.176.0/24", old_tag="china_unicom",
        new_tag="transtelecom", as_path=(), hops=(), evidence=(), ratio=None, protocol="tcp", border=None,
    )  # fmt: skip


def health(registry: CollectorRegistry) -> dict[str, float]:
    """The history's series and the two labelled ones it feeds, from one scrape."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labelled = s.name in ("nkprobe_fault", "nkprobe_errors_total")
            if s.name in HISTORY or (labelled and s.labels.get("kind") == "history"):
                out[s.name] = s.value
    return out


def test_every_scrape_reads_the_writers_status_of_the_moment(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be")  # a real fault: the open fails
    writer = HistoryWriter(str(blocked))
    registry = build_registry(results(), history=writer.status)
    assert health(registry)["nkprobe_fault"] == 0.0
    writer.submit(change(1.0))
    assert not writer.step()
    assert not writer.step()  # the same error again: counted once
    seen = health(registry)
    assert seen["nkprobe_fault"] == 1.0 and seen["nkprobe_history_pending"] == 1.0
    assert seen["nkprobe_history_write_errors_total"] == 1.0 and seen["nkprobe_errors_total"] == 1.0
    blocked.unlink()
    assert writer.step()
    seen = health(registry)
    assert seen["nkprobe_fault"] == 0.0 and seen["nkprobe_history_pending"] == 0.0
    assert seen["nkprobe_history_written_total"] == 1.0 and seen["nkprobe_history_write_errors_total"] == 1.0
    writer.close()


def test_before_the_writer_runs_every_history_series_is_there_at_zero() -> None:
    seen = health(build_registry(results()))
    assert seen == dict.fromkeys((*HISTORY, "nkprobe_fault", "nkprobe_errors_total"), 0.0)


def test_the_history_fault_has_no_other_writer() -> None:
    with pytest.raises(ValueError, match=r"HistoryWriter\.status"):
        results().set_fault("history", True)
