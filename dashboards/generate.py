#!/usr/bin/env python3
"""Writes the Grafana dashboards (nkprobe-*.json) of this directory.

The JSON files are generated so that every panel follows the same conventions (datasource variable,
units, legends) and stay reviewable as Python. Run `python3 dashboards/generate.py` after editing;
tests/deploy/test_deploy_dashboards.py fails when the JSON and this file disagree.

Metric names used here are the agent's (README "Metrics") and the central recording rules'
(deploy/central/rules/nkprobe.rules.yml); the tests check both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
UPSTREAMS = ("china_unicom", "transtelecom", "other", "unknown")
# Fixed colours so an upstream looks the same in every panel.
UPSTREAM_COLOURS = {"china_unicom": "red", "transtelecom": "blue", "other": "purple", "unknown": "gray"}

Panel = dict[str, Any]


def _target(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False, ref: str = "A"
) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend or "__auto"}
    if instant:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


def _upstream_overrides() -> list[dict[str, Any]]:
    return [
        {
            "matcher": {"id": "byRegexp", "options": f".*{name}.*"},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}],
        }
        for name, colour in UPSTREAM_COLOURS.items()
    ]


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1
        self.panels: list[Panel] = []

    def add(self, panel: Panel, w: int, h: int) -> None:
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel.setdefault("datasource", DS)
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        self.panels.append(
            {
                "id": self.next_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
            }
        )
        self.next_id += 1
        self.y += 1


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    stack: bool = False,
    percent: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    upstream_colours: bool = False,
) -> Panel:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 40 if stack else 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "percent" if percent else "normal", "group": "A"}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": _upstream_overrides() if upstream_colours else []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    text_mode: str = "auto",
    thresholds: list[dict[str, Any]] | None = None,
) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": thresholds or [{"color": "green", "value": None}],
                },
            },
            "overrides": _upstream_overrides(),
        },
        "options": {
            "textMode": text_mode,
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def table(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    transformations: list[dict[str, Any]],
    *,
    unit: str = "short",
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "targets": targets,
        "transformations": transformations,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides or []},
        "options": {"showHeader": True, "cellHeight": "sm"},
    }


def heatmap(title: str, description: str, expr: str) -> Panel:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "targets": [{**_target(expr, "{{le}}"), "format": "heatmap"}],
        "options": {
            "calculate": False,
            "yAxis": {"unit": "s", "axisPlacement": "left"},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential", "exponent": 0.5},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"show": True, "yHistogram": True},
        },
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def _datasource_var() -> dict[str, Any]:
    return {
        "name": "DS_PROMETHEUS",
        "label": "Datasource",
        "type": "datasource",
        "query": "prometheus",
        "hide": 0,
        "current": {},
        "regex": "",
        "refresh": 1,
    }


def _query_var(
    name: str, label: str, query: str, *, multi: bool = True, include_all: bool = True
) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "hide": 0,
    }
    if include_all:
        var["allValue"] = ".*"
    return var


def _path_change_annotation(selector: str) -> dict[str, Any]:
    return {
        "name": "Path changes",
        "datasource": DS,
        "enable": True,
        "iconColor": "orange",
        "expr": "sum by (agent, target, prefix) "
        f"(increase(nkprobe_path_changes_total{{{selector}}}[2m])) > 0",
        "step": "2m",
        "titleFormat": "upstream changed: {{target}}",
        "textFormat": "agent {{agent}}, {{prefix}}",
        "tagKeys": "agent,prefix",
    }


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    time_from: str = "now-24h",
) -> dict[str, Any]:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["nkprobe"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timezone": "utc",
        "links": [
            {
                "type": "dashboards",
                "tags": ["nkprobe"],
                "asDropdown": True,
                "title": "nkprobe",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [_datasource_var(), *variables]},
        "annotations": {"list": [builtin, *annotations]},
        "panels": layout.panels,
    }


def overview() -> dict[str, Any]:
    sel = 'agent=~"$agent", prefix=~"$prefix"'
    lay = Layout()
    lay.row("Which upstream carries each /24 now")
    lay.add(
        table(
            "Upstream per /24 (fleet)",
            "Share of the agents' known tags for each /24 that name each upstream, now. "
            "1 = every agent agrees. A /24 split per flow shows two partial shares.",
            [
                _target(
                    'prefix_upstream:nkprobe_path_upstream:share{prefix=~"$prefix"}', instant=True, table=True
                )
            ],
            [
                {
                    "id": "groupingToMatrix",
                    "options": {"columnField": "upstream", "rowField": "prefix", "valueField": "Value"},
                }
            ],
            unit="percentunit",
            overrides=[
                {
                    "matcher": {"id": "byType", "options": "number"},
                    "properties": [
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                        {"id": "color", "value": {"mode": "continuous-GrYlRd"}},
                    ],
                }
            ],
        ),
        10,
        8,
    )
    lay.add(
        table(
            "Upstream per /24 and agent",
            "The current tag each agent gives each /24 (any of its targets there).",
            [
                _target(
                    f"max by (agent, prefix, upstream) (nkprobe_path_upstream{{{sel}}}) == 1",
                    instant=True,
                    table=True,
                )
            ],
            [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        14,
        8,
    )
    lay.row("Upstream share over time")
    lay.add(
        timeseries(
            "Upstream share, all selected /24s",
            "Of all (agent, target) tags, the share on each upstream.",
            [_target(f"sum by (upstream) (nkprobe_path_upstream{{{sel}}})", "{{upstream}}")],
            stack=True,
            percent=True,
            upstream_colours=True,
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Upstream share per /24 (fleet)",
            "Fleet majority input per /24: above 50 % is the consensus the alerts use.",
            [
                _target(
                    'prefix_upstream:nkprobe_path_upstream:share{prefix=~"$prefix"}',
                    "{{prefix}} {{upstream}}",
                )
            ],
            unit="percentunit",
            minimum=0,
            maximum=1,
            upstream_colours=True,
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Per-flow split (latest trace round)",
            "Share of the flows traced per round that crossed each upstream, averaged over agents and "
            "targets: a /24 load-balanced per flow sits between 0 and 1.",
            [
                _target(
                    f"avg by (prefix, upstream) (nkprobe_path_upstream_ratio{{{sel}}})",
                    "{{prefix}} {{upstream}}",
                )
            ],
            unit="percentunit",
            minimum=0,
            maximum=1,
            upstream_colours=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Path changes per /24",
            "Upstream changes seen by the selected agents per /24.",
            [
                _target(
                    f"sum by (prefix) (increase(nkprobe_path_changes_total{{{sel}}}[$__rate_interval]))",
                    "{{prefix}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.row("Reachability")
    lay.add(
        stat(
            "Targets answering",
            "Share of (agent, target) pairs whose latest probes got an answer.",
            [_target(f"avg (nkprobe_target_up{{{sel}}})")],
            unit="percentunit",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 0.5},
                {"color": "green", "value": 0.9},
            ],
        ),
        4,
        8,
    )
    lay.add(
        timeseries(
            "Reachability per target (fleet)",
            "Fraction of the agents probing each target that get answers.",
            [_target('target:nkprobe_target_up:avg{prefix=~"$prefix"}', "{{target}}")],
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        10,
        8,
    )
    lay.add(
        timeseries(
            "Loss per target",
            "Latency probes unanswered over the rate window, per target, worst agent.",
            [
                _target(
                    f"1 - min by (target) (agent_target:nkprobe_probes_answered:ratio_rate5m{{{sel}}})",
                    "{{target}}",
                )
            ],
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        10,
        8,
    )
    bgp_beside_traces(lay, sel)
    lay.row("Round-trip times per upstream")
    for upstream in ("china_unicom", "transtelecom", "other"):
        # From a recording rule: summing every agent's bucket series at view time takes seconds at
        # 1,000 agents (bench/RESULTS.md "Fleet"); the rule has no agent label, so the agent selector
        # does not apply here (the target dashboard has per-agent RTTs).
        lay.add(
            heatmap(
                f"RTT via {upstream}",
                f"Latency-probe RTTs of targets whose current path crosses {upstream}, all agents "
                "(selected /24s; the agent selector does not apply).",
                "sum by (le) (prefix_upstream_le:nkprobe_rtt_seconds_bucket:rate5m"
                f'{{prefix=~"$prefix", upstream="{upstream}"}})',
            ),
            8,
            9,
        )
    variables = [
        _query_var("agent", "Agent", "label_values(nkprobe_agent_info, agent)"),
        _query_var("prefix", "/24", "label_values(nkprobe_path_upstream, prefix)"),
    ]
    return dashboard(
        uid="nkprobe-overview",
        title="nkprobe: overview",
        description="Which upstream carries North Korea's /24s, seen from every agent.",
        layout=lay,
        variables=variables,
        annotations=[_path_change_annotation(sel)],
        time_from="now-7d",
    )


# The control plane beside the data plane, per /24 (agent/bgp/live.py): the share of RIS peers whose
# route enters the destination AS from each upstream, and the share of the agents' traced flows that do.
# tests/bgp/test_bgp_live_lab.py evaluates these very queries (with a /24 for $prefix).
BGP_QUERIES = {
    "bgp_share": "avg by (prefix, upstream) (nkprobe_bgp_upstream_ratio{{{sel}}})",
    "traced_share": "avg by (prefix, upstream) (nkprobe_path_upstream_ratio{{{sel}}})",
}


def bgp_beside_traces(lay: Layout, sel: str) -> None:
    """One panel per selected /24 (repeated over the /24 variable): BGP share and traced share."""
    lay.row("BGP beside the traces")
    panel = timeseries(
        "BGP and traced upstream share, $prefix",
        "Solid: the share of RIS peers whose BGP route to the /24 enters the destination AS from each "
        "upstream (the agents' live view, RIS Live and RIPEstat). Dashed: the share of the agents' "
        "traced flows that cross each upstream. A routing change shows in BGP first; the traces follow "
        "within seconds (a BGP change re-traces the /24).",
        [
            _target(BGP_QUERIES["bgp_share"].format(sel=sel), "BGP {{upstream}}"),
            _target(BGP_QUERIES["traced_share"].format(sel=sel), "traced {{upstream}}", ref="B"),
        ],
        unit="percentunit",
        minimum=0,
        maximum=1,
        upstream_colours=True,
    )
    panel["fieldConfig"]["overrides"].append(
        {
            "matcher": {"id": "byRegexp", "options": "traced .*"},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        }
    )
    # Grafana repeats it per selected /24, two to a row (each then 12 columns wide).
    panel["repeat"] = "prefix"
    panel["repeatDirection"] = "h"
    panel["maxPerRow"] = 2
    lay.add(panel, 24, 8)
    lay.add(
        table(
            "BGP visibility and RPKI per /24",
            "Share of RIS full-table peers that see each /24 (a collapse is an outage in BGP), its RPKI "
            "state with the destination AS as origin, and whether the agents' live view is current.",
            [
                _target(
                    f"avg by (prefix) (nkprobe_bgp_visibility_ratio{{{sel}}})", instant=True, table=True
                ),
                _target(
                    f"max by (prefix, state) (nkprobe_bgp_rpki_state{{{sel}}}) == 1",
                    instant=True,
                    table=True,
                    ref="B",
                ),
            ],
            [{"id": "merge", "options": {}}],
            unit="short",
        ),
        24,
        6,
    )


def target_detail() -> dict[str, Any]:
    sel = 'agent=~"$agent", target="$target"'
    lay = Layout()
    lay.row("Path")
    lay.add(
        stat(
            "Current upstream",
            "The upstream tag of the latest trace, per agent.",
            [
                _target(
                    f"max by (agent, upstream) (nkprobe_path_upstream{{{sel}}}) == 1",
                    "{{agent}}: {{upstream}}",
                )
            ],
            text_mode="name",
        ),
        6,
        5,
    )
    lay.add(
        stat(
            "Last path change",
            "When each agent last saw this target's upstream change.",
            [
                _target(
                    f"max by (agent) (nkprobe_path_last_change_timestamp_seconds{{{sel}}}) * 1000",
                    "{{agent}}",
                )
            ],
            unit="dateTimeFromNow",
        ),
        6,
        5,
    )
    lay.add(
        stat(
            "Trace reaches the target",
            "1 when the latest trace reached the destination.",
            [_target(f"min by (agent) (nkprobe_path_reached{{{sel}}})", "{{agent}}")],
            thresholds=[{"color": "orange", "value": None}, {"color": "green", "value": 1}],
        ),
        6,
        5,
    )
    lay.add(
        stat(
            "Tag confidence",
            "How far the evidence backs the current tag, per agent (README \"How it tags\"): 1 two signals "
            "agree, 0.5 one signal or a change awaiting confirmation (read the tag with care), 0 no tag.",
            [_target(f"min by (agent) (nkprobe_path_confidence{{{sel}}})", "{{agent}}")],
            thresholds=[
                {"color": "grey", "value": None},
                {"color": "yellow", "value": 0.5},
                {"color": "green", "value": 1},
            ],
        ),
        6,
        5,
    )
    lay.add(
        timeseries(
            "Upstream per flow over time",
            "Share of the flows in each trace round that crossed each upstream.",
            [_target(f"avg by (upstream) (nkprobe_path_upstream_ratio{{{sel}}})", "{{upstream}}")],
            unit="percentunit",
            stack=True,
            upstream_colours=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Hops",
            "IP hops to the target, or to the last hop that answered.",
            [_target(f"max by (agent) (nkprobe_path_hops{{{sel}}})", "{{agent}}")],
            minimum=0,
        ),
        12,
        8,
    )
    lay.row("Latency and loss")
    lay.add(
        timeseries(
            "Border RTT, each side",
            "RTT at the last hop before the destination AS (side=upstream) and at the first hop inside it "
            "(side=destination).",
            [_target(f"max by (agent, side) (nkprobe_border_rtt_seconds{{{sel}}})", "{{agent}} {{side}}")],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "RTT across the border",
            "Destination-side RTT minus upstream-side RTT: the time the border link and the first "
            "router add.",
            [
                _target(
                    f'max by (agent) (nkprobe_border_rtt_seconds{{{sel}, side="destination"}})'
                    f' - max by (agent) (nkprobe_border_rtt_seconds{{{sel}, side="upstream"}})',
                    "{{agent}}",
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "RTT median and 95th percentile",
            "From the latency-probe histogram, per agent and protocol.",
            [
                _target(
                    "histogram_quantile(0.5, sum by (agent, protocol, le) "
                    f"(rate(nkprobe_rtt_seconds_bucket{{{sel}}}[$__rate_interval])))",
                    "{{agent}} {{protocol}} p50",
                ),
                _target(
                    "histogram_quantile(0.95, sum by (agent, protocol, le) "
                    f"(rate(nkprobe_rtt_seconds_bucket{{{sel}}}[$__rate_interval])))",
                    "{{agent}} {{protocol}} p95",
                    ref="B",
                ),
            ],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Loss",
            "Latency probes without an answer, per agent and protocol.",
            [
                _target(
                    "1 - sum by (agent, protocol) "
                    f"(rate(nkprobe_probes_answered_total{{{sel}}}[$__rate_interval]))"
                    " / sum by (agent, protocol) "
                    f"(rate(nkprobe_probes_sent_total{{{sel}}}[$__rate_interval]))",
                    "{{agent}} {{protocol}}",
                )
            ],
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        12,
        8,
    )
    lay.add(
        heatmap(
            "RTT heatmap",
            "Latency-probe RTT distribution (all selected agents, all protocols).",
            f"sum by (le) (rate(nkprobe_rtt_seconds_bucket{{{sel}}}[$__rate_interval]))",
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Traceroute outcomes",
            "Traces per outcome: reached, unreached, error.",
            [
                _target(
                    f"sum by (outcome) (increase(nkprobe_traceroutes_total{{{sel}}}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            stack=True,
        ),
        12,
        9,
    )
    variables = [
        # Pick agents: every panel here has a line per agent, which at fleet scale (1,000 agents) is
        # neither readable nor fast (bench/RESULTS.md "Fleet"); the fleet view of a target is the
        # overview's.
        _query_var("agent", "Agent", "label_values(nkprobe_agent_info, agent)", include_all=False),
        _query_var(
            "target", "Target", "label_values(nkprobe_target_up, target)", multi=False, include_all=False
        ),
    ]
    return dashboard(
        uid="nkprobe-target",
        title="nkprobe: target detail",
        description="One target: its path, border RTTs, loss and RTT distribution per agent.",
        layout=lay,
        variables=variables,
        annotations=[_path_change_annotation(sel)],
    )


def fleet() -> dict[str, Any]:
    lay = Layout()
    lay.add(
        stat(
            "Agents reporting",
            "Agents whose metrics arrived in the last 5 minutes.",
            [_target("count (nkprobe_agent_info)")],
        ),
        6,
        5,
    )
    lay.add(
        stat(
            "Agents quiet",
            "Agents that reported in the last day but not in the last 5 minutes (a renamed agent, known "
            "by its id, is not quiet).",
            [
                _target(f"count ({QUIET}) or vector(0)")
            ],
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
        ),
        6,
        5,
    )
    lay.add(
        stat(
            "Versions in the fleet",
            "Agents per nkprobe version.",
            [_target("count by (version) (nkprobe_build_info)", "{{version}}")],
        ),
        12,
        5,
    )
    lay.add(
        stat(
            "Vantage points unhealthy",
            "Agents that say their own side fails (no route, link down, traces dying at the home router "
            "with no target answering): the fleet's alerts and majorities leave them out.",
            [_target("count (max by (agent) (nkprobe_vantage_healthy) == 0) or vector(0)")],
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
        ),
        6,
        5,
    )
    lay.add(
        table(
            "Unhealthy vantage points",
            "Each agent whose vantage is unhealthy, with the reason it gives (nkprobe_vantage_reason): "
            "no_route, link_down or local_hops_silent. Its owner is told after 30 minutes "
            "(alert NkprobeAgentUnhealthy).",
            [_target(UNHEALTHY, instant=True, table=True)],
            [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        18,
        5,
    )
    lay.add(
        table(
            "Agents",
            "Every agent seen in the last 7 days, one row per agent id under its latest name (a renamed "
            "or reinstalled agent keeps its id): version, seconds since its last report, age of its AS "
            "table.",
            [
                _target(
                    "max by (agent, id, version) (nkprobe_build_info * on (agent) group_left (id) "
                    "max by (agent, id) (nkprobe_agent_info))",
                    instant=True,
                    table=True,
                    ref="A",
                ),
                _target(LAST_REPORT, instant=True, table=True, ref="B"),
                _target(
                    "time() - min by (agent) (nkprobe_asn_table_snapshot_timestamp_seconds)",
                    instant=True,
                    table=True,
                    ref="C",
                ),
            ],
            [
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value #A": True},
                        "renameByName": {"Value #B": "since last report", "Value #C": "AS table age"},
                    },
                },
            ],
            unit="s",
        ),
        24,
        10,
    )
    lay.add(
        timeseries(
            "Probe packets per second",
            "Every probe packet an agent sends (all kinds; capped by agent.max_pps): the 10 busiest "
            "agents at each point (one line per agent does not scale to a fleet).",
            [
                _target(
                    f"topk({TOP}, sum by (agent) (rate(nkprobe_packets_sent_total[$__rate_interval])))",
                    "{{agent}}",
                )
            ],
            unit="pps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Traceroute duration, 95th percentile",
            "Wall time of one trace per agent over 5 minutes (recording rule): the 10 slowest agents.",
            [_target(f"topk({TOP}, agent:nkprobe_traceroute_duration_seconds:p95_5m)", "{{agent}}")],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Traceroute errors",
            "Traces that ended in an error (not an unreachable target: an agent fault): the 10 agents "
            "with the most.",
            [
                _target(
                    f"topk({TOP}, sum by (agent) "
                    '(rate(nkprobe_traceroutes_total{outcome="error"}[$__rate_interval])))',
                    "{{agent}}",
                )
            ],
            unit="ops",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "AS table age",
            "Age of the oldest IP-to-AS table each agent tags with, the 10 oldest; the alert fires past 30 "
            "days.",
            [
                _target(
                    f"topk({TOP}, time() - min by (agent) (nkprobe_asn_table_snapshot_timestamp_seconds))",
                    "{{agent}}",
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    fleet_agreement(lay)
    return dashboard(
        uid="nkprobe-fleet",
        title="nkprobe: fleet",
        description="The agents: who reports, which version, how busy.",
        layout=lay,
        variables=[],
        annotations=[],
    )


# Agents seen in the last day that send no nkprobe_agent_info now, neither under their name nor (a
# renamed agent) under their id; agents older than ids (no `id` label) by name alone. The alert
# NkprobeAgentNotReporting has the same form.
QUIET = (
    "max by (agent, id) (max_over_time(nkprobe_agent_info[1d])) unless on (agent) "
    'max by (agent) (nkprobe_agent_info) unless on (id) max by (id) (nkprobe_agent_info{id!=""})'
)
# Seconds since each agent id last reported, under its latest name (topk by id keeps the name with the
# latest report); agents without an id by name.
LAST_SEEN = "agent:nkprobe_agent_info:last_seen_timestamp"
LAST_REPORT = (
    f'time() - topk by (id) (1, max by (agent, id) (last_over_time({LAST_SEEN}{{id!=""}}[7d]))) or '
    f'time() - max by (agent) (last_over_time({LAST_SEEN}{{id=""}}[7d]))'
)
# Agents whose vantage is unhealthy, with their reason (agent/vantage.py).
UNHEALTHY = (
    "max by (agent, reason) (nkprobe_vantage_reason == 1) and on (agent) "
    "(max by (agent) (nkprobe_vantage_healthy) == 0)"
)
# An agent is "silent" after this long without a sample (the NkprobeAgentNotReporting alert waits 15 min).
SILENT_MINUTES = 10
# Per agent and /24, the upstreams its targets there are tagged with (1), unknown tags left out: one
# vote per agent, however many targets it has in the /24. Shared by the fleet-agreement panels and
# checked against simulated fleets in tests/fleet.
AGENT_VOTES = 'max by (agent, prefix, upstream) (nkprobe_path_upstream{upstream!="unknown"}) == 1'
# Share of the voting agents that see each upstream for a /24.
# (deploy/central/rules/nkprobe.rules.yml records it as prefix_upstream:nkprobe_path_upstream:agent_share:
# evaluated twice per query at 1,000 agents it took a second.)
AGENT_SHARE = "prefix_upstream:nkprobe_path_upstream:agent_share"
TOP = 10  # per-agent time series show the top 10 agents, not one line per agent of the fleet
FLEET_QUERIES = {
    "share": AGENT_SHARE,
    # An agent's vote where more than half of the agents agree on another upstream for the /24.
    "disagreeing": (
        f"({AGENT_VOTES}) unless on (prefix, upstream) ({AGENT_SHARE} > 0.5)"
        f" and on (prefix) ({AGENT_SHARE} > 0.5)"
    ),
    # A (prefix, upstream) that one agent alone sees.
    "lone": (f"({AGENT_VOTES}) and on (prefix, upstream) (count by (prefix, upstream) ({AGENT_VOTES}) == 1)"),
    # A renamed agent is not silent: its id reports under the new name.
    "silent": (
        "max by (agent, id) (present_over_time(nkprobe_agent_info[1d])) unless on (agent) max by (agent) "
        f"(present_over_time(nkprobe_agent_info[{SILENT_MINUTES}m])) unless on (id) max by (id) "
        f'(present_over_time(nkprobe_agent_info{{id!=""}}[{SILENT_MINUTES}m]))'
    ),
    # Targets whose traced upstream BGP does not show next to the destination AS (agent/bgp).
    "absent_from_bgp": (
        "(nkprobe_path_upstream_in_bgp == 0) * on (agent, target, prefix) group_left (upstream)"
        " (nkprobe_path_upstream == 1)"
    ),
}


def fleet_agreement(lay: Layout) -> None:
    """Fleet-scale panels: the /24s' upstream shares across agents, who disagrees, who is silent."""
    lay.row("Fleet agreement")
    lay.add(
        table(
            "Upstream share per /24 (agents)",
            "Share of the agents with a known tag for each /24 that see each upstream there (an agent "
            "whose targets in the /24 differ counts for each).",
            [_target(FLEET_QUERIES["share"], instant=True, table=True)],
            [
                {
                    "id": "groupingToMatrix",
                    "options": {"columnField": "upstream", "rowField": "prefix", "valueField": "Value"},
                }
            ],
            unit="percentunit",
        ),
        12,
        8,
    )
    lay.add(
        table(
            f"Agents silent for more than {SILENT_MINUTES} minutes",
            f"Agents seen during the last day with no sample for {SILENT_MINUTES} minutes or more.",
            [_target(FLEET_QUERIES["silent"], instant=True, table=True)],
            [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        12,
        8,
    )
    lay.add(
        table(
            "Agents disagreeing with the majority",
            "Agents whose tag for a /24 is not the upstream more than half of the agents see there "
            "(a /24 without a majority, like one split per flow, lists nobody).",
            [_target(FLEET_QUERIES["disagreeing"], instant=True, table=True)],
            [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        12,
        8,
    )
    lay.add(
        table(
            "Paths seen by one vantage only",
            "A /24 and upstream that a single agent sees: a local detour, a misclassification, or the "
            "first sign of a change.",
            [_target(FLEET_QUERIES["lone"], instant=True, table=True)],
            [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        12,
        8,
    )
    lay.add(
        table(
            "Traced upstream absent from BGP",
            "Targets whose traced upstream is not a neighbour of the destination AS for the /24 in the "
            "agent's BGP snapshot ([bgp] snapshot; nkprobe bgp shows it).",
            [_target(FLEET_QUERIES["absent_from_bgp"], instant=True, table=True)],
            [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        24,
        8,
    )


DASHBOARDS = {
    "nkprobe-overview.json": overview,
    "nkprobe-target.json": target_detail,
    "nkprobe-fleet.json": fleet,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    for name, text in render().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
