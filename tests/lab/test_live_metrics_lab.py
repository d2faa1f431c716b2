"""A live scrape of `nkprobe run` in the lab: `promtool check metrics` passes on it, and every metric family
of the contract (CONTRACT.md "Metrics") is there with its type, its labels, and samples for every target.

The scrape is taken once the agent has pinged and traced (so the histograms have observations and the
per-round gauges have values), from the real agent with its probe sockets in the lab's vantage namespace.
promtool is Debian's (package prometheus, installed by quickstart.sh): its linter is the one operators
and Prometheus' own CI use, so a HELP text, a unit suffix or a counter name it rejects fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, agent_config, wait_for

pytestmark = pytest.mark.lab

TARGETS = ("198.19.176.10", "198.19.177.20")
PER_TARGET = ("target", "prefix")
# CONTRACT.md "Metrics": the family as exposed in the text format (its # TYPE line), its type, and the
# labels every series carries. Written out here rather than read from CONTRACT.md, which lives outside
# this repository: a clean clone in CI has no copy of it to read.
CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    "nkprobe_build_info": ("gauge", ("version",)),
    "nkprobe_agent_info": ("gauge", ("agent", "owner", "id")),  # owner and id: issue 28
    "nkprobe_packets_sent_total": ("counter", ("protocol",)),
    "nkprobe_probes_sent_total": ("counter", (*PER_TARGET, "protocol")),
    "nkprobe_probes_answered_total": ("counter", (*PER_TARGET, "protocol")),
    "nkprobe_rtt_seconds": ("histogram", (*PER_TARGET, "protocol")),
    "nkprobe_target_up": ("gauge", PER_TARGET),
    "nkprobe_path_upstream": ("gauge", (*PER_TARGET, "upstream")),
    "nkprobe_path_upstream_ratio": ("gauge", (*PER_TARGET, "upstream")),
    "nkprobe_path_changes_total": ("counter", PER_TARGET),
    "nkprobe_path_last_change_timestamp_seconds": ("gauge", PER_TARGET),
    "nkprobe_path_hops": ("gauge", PER_TARGET),
    "nkprobe_path_reached": ("gauge", PER_TARGET),
    "nkprobe_border_rtt_seconds": ("gauge", (*PER_TARGET, "side")),
    "nkprobe_traceroutes_total": ("counter", (*PER_TARGET, "outcome")),
    "nkprobe_traceroute_duration_seconds": ("histogram", ("protocol",)),
}
# No label ever holds a hop address, hostname, hop number, AS number or path hash (CONTRACT.md).
FORBIDDEN_LABELS = {"hop", "address", "hostname", "asn", "as", "path", "hash", "ttl"}


def scrape_text(agent: Agent) -> str:
    with urllib.request.urlopen(agent.url + "/metrics", timeout=5) as r:
        return str(r.read().decode())


def traced_and_answered(agent: Agent) -> bool:
    """Every target has a trace that reached it and an answered latency probe."""
    samples = agent.scrape()
    for t in TARGETS:
        where = {("target", t), ("prefix", t.rsplit(".", 1)[0] + ".0/24")}
        if samples.get(("nkprobe_path_reached", frozenset(where))) != 1:
            return False
        if not sum(
            v for (n, ls), v in samples.items() if n == "nkprobe_probes_answered_total" and where <= ls
        ):
            return False
    return True


def test_promtool_passes_a_live_scrape_with_every_contract_family(lab: LabInfo, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: quickstart.sh installs Debian's prometheus package"
    config = agent_config(lab, tmp_path, state_dir=tmp_path / "state", targets=TARGETS, max_pps=200)
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: traced_and_answered(agent), 20, f"targets not traced and answered: {agent.log()}")
        text = scrape_text(agent)
    finally:
        code = agent.stop()
    assert code == 0, agent.log()

    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr  # not even a warning

    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    wrong = {name: types.get(name) for name, (kind, _) in CONTRACT.items() if types.get(name) != kind}
    assert not wrong, f"families missing or of the wrong type (want {CONTRACT}): {wrong}"

    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in CONTRACT.items():
        family = families[name.removesuffix("_total") if kind == "counter" else name]
        assert family.samples, name
        for s in family.samples:
            extra = {"le"} if s.name.endswith("_bucket") else set()
            assert set(s.labels) == set(labels) | extra, (s.name, s.labels)
            assert not FORBIDDEN_LABELS & set(s.labels), (s.name, s.labels)
        if "target" in labels:
            assert {s.labels["target"] for s in family.samples} == set(TARGETS), name
            for s in family.samples:
                assert s.labels["prefix"] == s.labels["target"].rsplit(".", 1)[0] + ".0/24", s.labels
        if kind == "histogram":
            counts = [s.value for s in family.samples if s.name == name + "_count"]
            assert counts and max(counts) >= 1, f"{name}: no observation after traces and pings"
            assert any(s.labels.get("le") == "+Inf" for s in family.samples), name
    # Every tag is present for every target (CONTRACT.md: "every tag value is always present"), one at 1.
    tags = {"china_unicom", "transtelecom", "other", "unknown"}
    upstream = families["nkprobe_path_upstream"].samples
    for t in TARGETS:
        mine = {s.labels["upstream"]: s.value for s in upstream if s.labels["target"] == t}
        assert set(mine) == tags and sorted(mine.values()) == [0, 0, 0, 1], (t, mine)
