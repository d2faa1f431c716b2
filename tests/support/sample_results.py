"""Fresh results (agent.results.Results) of two lab targets, for the exporter and identity tests."""

from __future__ import annotations

from agent.model import Target
from agent.results import Results
from agent.tracking import tag_values

TAGS = tag_values(["china_unicom", "transtelecom"])
TARGETS = (Target("198.19.176.10", "cu"), Target("198.19.179.20"))


def make_state() -> Results:
    """Fresh results of two targets, nothing probed yet, the wall clock at 1000 s."""
    return Results(
        agent_name="lab-1",
        version="9.9.9",
        targets=TARGETS,
        ping_protocols=("icmp", "tcp"),
        trace_protocol="tcp",
        tags=TAGS,
        wall=lambda: 1000.0,
    )
