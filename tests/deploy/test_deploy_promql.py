"""Every PromQL expression of the dashboards and the central rules parses (promtool), and names only
metrics the agent exports (CONTRACT.md "Metrics", and the agent's real exporter) or
that the central recording rules define."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.deployhelp import REPO, need_tool, unavailable
from tests.support.promql import (
    DASHBOARD_FILES,
    RULE_FILES,
    all_exprs,
    grafana_to_promql,
    variable_metrics,
)
from tests.support.steering import shared_file

# Metrics the deploy side needs beyond CONTRACT.md, agreed with the agent's exporter (see deploy/README.md):
AGENT_ADDITIONS = {
    # Unix time of the IP-to-AS data the agent tags with (0 when no table is loaded).
    "nkprobe_asn_table_snapshot_timestamp_seconds",
    # 1/0/NaN: the traced upstream is a BGP neighbour of the destination AS for the /24 (agent/bgp).
    "nkprobe_path_upstream_in_bgp",
    # 1/0.5/0/NaN: the classifier's confidence in the current tag (README "How it tags").
    "nkprobe_path_confidence",
    # The live BGP view (README "BGP cross-check", issue 26): per /24 and in total.
    "nkprobe_bgp_upstream_ratio",
    "nkprobe_bgp_visibility_ratio",
    "nkprobe_bgp_rpki_state",
    "nkprobe_bgp_last_change_timestamp_seconds",
    "nkprobe_bgp_stream_up",
    "nkprobe_bgp_stale",
    "nkprobe_bgp_messages_total",
    # 1/0: the agent's verdict on its own vantage point, and its reason (agent/vantage.py, issue 28).
    "nkprobe_vantage_healthy",
    "nkprobe_vantage_reason",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}


def contract_metrics(text: str) -> set[str]:
    """Metric names of CONTRACT.md's "Metrics" table (first column, in backquotes)."""
    return set(re.findall(r"^\| `(nkprobe_[a-z0-9_]+)` \|", text, flags=re.M))


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or durations).

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / on (x) group_left () b:c offset 1h'))
    ['a_bucket', 'b:c']
    """
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def _base(name: str, histograms: set[str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name


def _recorded() -> set[str]:
    return {m for f in RULE_FILES for m in re.findall(r"- record: (\S+)", f.read_text())}


def test_expressions_found() -> None:
    exprs = all_exprs()
    assert len(DASHBOARD_FILES) == 3
    assert sum(1 for where, _ in exprs if where.endswith(".json") or ".json:" in where) >= 30
    assert sum(1 for where, _ in exprs if ".yml:" in where) == 23


def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool has no bare PromQL parser: wrap each expression as a recording rule and check the file."""
    tool = need_tool("promtool")
    lines = ["groups:", "  - name: parse-check", "    rules:"]
    for i, (where, expr) in enumerate(all_exprs()):
        lines.append(f"      - record: check_{i}  # {where}")
        lines.append(f"        expr: {json.dumps(grafana_to_promql(expr))}")
    wrapper = tmp_path / "exprs.rules.yml"
    wrapper.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([tool, "check", "rules", str(wrapper)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_parse_check_rejects_bad_promql(tmp_path: Path) -> None:
    tool = need_tool("promtool")
    wrapper = tmp_path / "bad.rules.yml"
    wrapper.write_text(
        'groups:\n  - name: x\n    rules:\n      - record: bad\n        expr: "sum by (a (b)"\n'
    )
    proc = subprocess.run([tool, "check", "rules", str(wrapper)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def _used_metrics() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for where, expr in all_exprs():
        for name in metric_names(grafana_to_promql(expr)):
            used.setdefault(name, set()).add(where)
    for where, name in variable_metrics():
        used.setdefault(name, set()).add(where)
    return used


def test_recording_rules_used_are_defined() -> None:
    recorded = _recorded()
    missing = {n: w for n, w in _used_metrics().items() if ":" in n and n not in recorded}
    assert not missing, missing


def test_metrics_are_in_the_contract() -> None:
    path = shared_file("CONTRACT.md")
    if path is None:
        # CI lays shared/ beside its clone (so there this fails); a bare clone has no contract to read.
        unavailable("CONTRACT.md not found at ../shared/CONTRACT.md beside the repository")
    known = contract_metrics(path.read_text())
    assert len(known) >= 16, "CONTRACT.md's metrics table changed shape"
    histograms = {
        n
        for n in known
        if n.endswith("_seconds") and n in {"nkprobe_rtt_seconds", "nkprobe_traceroute_duration_seconds"}
    }
    allowed = known | AGENT_ADDITIONS | _recorded()
    unknown = {n: sorted(w) for n, w in _used_metrics().items() if _base(n, histograms) not in allowed}
    assert not unknown, f"metrics neither in CONTRACT.md nor agreed additions: {unknown}"


# Prints what the agent's real exporter exposes for one target. In its own interpreter, so pytest's
# sys.path (tests/agent is a package too) cannot swap the `agent` package.
EXPOSITION = """
from prometheus_client import generate_latest
from agent.exporter import build_registry
from agent.model import Target
from agent.results import Results
from agent.vantage import VantageHealth
state = Results(agent_name="t", version="0", targets=[Target("198.19.176.10")],
                ping_protocols=("icmp", "tcp"), trace_protocol="tcp",
                tags=("china_unicom", "transtelecom", "other", "unknown"))
# The live BGP view as built (no I/O: it has not run), so its series are exposed too.
from agent.bgp.feed import LiveFeed
from agent.bgp.live import LiveView
groups = {"china_unicom": [4837], "transtelecom": [20485]}
feed = LiveFeed(LiveView(131279, ["198.19.176.0/24"], groups), prefixes=("198.19.176.0/24",),
                ris_live_url="ws://127.0.0.1:9/", ripestat_url="http://127.0.0.1:9/", refresh_s=3600,
                stall_s=60)
vantage = VantageHealth(answer_window_s=10, trace_window_s=150)
print(generate_latest(build_registry(state, live=feed.status, vantage=vantage)).decode())
"""


def _exporter_names() -> tuple[set[str], set[str]]:
    """(every sample name, histogram base names) the agent's real exporter exposes for one target."""
    proc = subprocess.run(
        [sys.executable, "-c", EXPOSITION], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, f"could not build the exporter's output: {proc.stderr[-2000:]}"
    text = proc.stdout
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    histograms = set(re.findall(r"^# TYPE (\S+) histogram$", text, flags=re.M))
    return samples, histograms


def test_metrics_are_exported_by_the_agent() -> None:
    samples, histograms = _exporter_names()
    allowed = samples | histograms | _recorded()
    missing = {n: sorted(w) for n, w in _used_metrics().items() if _base(n, histograms) not in allowed}
    assert not missing, f"dashboards/rules query metrics the exporter lacks: {missing}"
    # Every agreed addition is exported, whether or not a dashboard or rule queries it yet.
    assert samples >= AGENT_ADDITIONS, f"agent does not export {sorted(AGENT_ADDITIONS - samples)}"
