"""The Prometheus collector: every metric of README "Metrics", built from one Results snapshot per scrape.

Nothing here probes: a scrape reads the snapshot the agent last wrote, and asks the components with a
status of their own (the BGP check in use, the history writer) for it (as smokeping_prober's
collector.go and client_python's custom collectors do). Every label set exists from the
first scrape: counters at 0, gauges without a value yet at NaN, every `upstream` value of every target.
No label holds a hop address, a hostname, a hop number, an AS number or a path hash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from agent.exporter.bgp_live import live_metrics
from agent.exporter.exposition import sample_line
from agent.exporter.families import (
    CounterFamily,
    GaugeFamily,
    HistogramFamily,
    InfoFamily,
    MetricFamily,
    Sample,
)
from agent.results import CONFIDENCE_VALUES, Histogram, Snapshot, TargetSnapshot, nan_if_none

if TYPE_CHECKING:  # agent.bgp is imported only when a BGP view is configured (README "BGP cross-check")
    from agent.bgp.feed import LiveStatus
    from agent.bgp.view import BgpCheck
    from agent.history.writer import HistoryStatus

TARGET_LABELS = ["target", "prefix"]

HistoryStatusOf = Callable[[], "HistoryStatus | None"]
"""The history writer's status of the moment (HistoryWriter.status); None while there is no writer."""


@dataclass(frozen=True, slots=True)
class Identity:
    """nkprobe_agent_info's labels beside `agent`: the owner of the config in use (agent.owner) and the
    agent id kept under the state directory (agent.identity); "" while unknown."""

    owner: str = ""
    id: str = ""


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    bounds = [*(repr(float(b)) for b in h.bounds), "+Inf"]
    return list(zip(bounds, (float(c) for c in h.counts), strict=True))


class SnapshotCollector:
    """Yields the metric families of one snapshot; `snapshot` is called once per scrape."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        bgp: Callable[[], BgpCheck | None] = lambda: None,
        history: HistoryStatusOf = lambda: None,
        live: Callable[[], LiveStatus | None] = lambda: None,
        identity: Callable[[], Identity] = Identity,
    ) -> None:
        self._snapshot = snapshot
        self._bgp = bgp  # the [bgp] snapshot cross-check in use (swapped on reload), None without one
        self._history = history  # the history writer's own status, None before it runs
        self._live = live  # the live BGP view's status, asked at scrape time; None while it is off
        self._identity = identity  # owner follows reloads; the id never changes
        self._targets = _TargetCache()

    def describe(self) -> list[MetricFamily]:
        # For prometheus_client registries (the tests, the fleet simulator): without describe(), one
        # with auto_describe calls collect() to learn the names; an empty description spares that work.
        return []

    def collect(self) -> Iterator[MetricFamily]:
        s = self._snapshot()
        yield from _agent_metrics(s, self._identity())
        yield _packet_metrics(s)
        yield from self._targets.families(s)
        yield _trace_metrics(s)
        live, snapshot = self._live(), self._bgp()
        yield from _bgp_metrics(s, live if live is not None else snapshot, snapshot)
        yield from live_metrics(live)
        yield from _health_metrics(s, self._history())


def _agent_metrics(s: Snapshot, who: Identity) -> Iterator[MetricFamily]:
    build = GaugeFamily("nkprobe_build_info", "The nkprobe version running.", labels=["version"])
    build.add_metric([s.version], 1.0)
    yield build
    agent = GaugeFamily(
        "nkprobe_agent_info",
        "The agent's configured name (agent.name), its owner (agent.owner, an e-mail address or empty) and "
        "its id (made once under agent.state_dir; kept across reinstalls, upgrades and renames).",
        labels=["agent", "owner", "id"],
    )
    agent.add_metric([s.agent_name, who.owner, who.id], 1.0)
    yield agent
    egress = GaugeFamily(
        "nkprobe_egress_info",
        "The interface of the default route probes leave by (empty if none); never an address.",
        labels=["interface"],
    )
    egress.add_metric([s.egress_interface], 1.0)
    yield egress
    asn = InfoFamily(
        "nkprobe_asn_table", "The IP-to-AS files loaded (base names, comma-separated).", labels=[]
    )
    asn.add_metric([], {"files": ",".join(_basename(f) for f in s.asn_files)})
    yield asn
    entries = GaugeFamily(
        "nkprobe_asn_table_entries", "Prefixes in the loaded IP-to-AS table (NaN before it is loaded)."
    )
    entries.add_metric([], nan_if_none(s.asn_entries))
    yield entries
    snapshot = GaugeFamily(
        "nkprobe_asn_table_snapshot_timestamp_seconds",
        "Unix time of the IP-to-AS data in use (the oldest dated source); 0 when not known.",
    )
    snapshot.add_metric([], s.asn_snapshot_time or 0.0)
    yield snapshot
    started = GaugeFamily("nkprobe_start_time_seconds", "When the agent started (Unix time).")
    started.add_metric([], s.started_at)
    yield started


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _packet_metrics(s: Snapshot) -> MetricFamily:
    packets = CounterFamily(
        "nkprobe_packets_sent", "Every probe packet sent, latency probes and traces.", labels=["protocol"]
    )
    for proto, n in s.packets_sent.items():
        packets.add_metric([proto], float(n))
    return packets


class _TargetFamilies(NamedTuple):
    """The families with series of each target, in the order of the page: the latency probes', then the
    path's (README "Metrics")."""

    sent: CounterFamily
    answered: CounterFamily
    rtt: HistogramFamily
    up: GaugeFamily
    upstream: GaugeFamily
    ratio: GaugeFamily
    changes: CounterFamily
    last_change: GaugeFamily
    hops: GaugeFamily
    reached: GaugeFamily
    border: GaugeFamily
    confidence: GaugeFamily
    traces: CounterFamily


def _target_families() -> _TargetFamilies:
    """Each of _TargetFamilies, empty."""
    labels = [*TARGET_LABELS, "protocol"]
    return _TargetFamilies(
        CounterFamily("nkprobe_probes_sent", "Latency probes sent.", labels=labels),
        CounterFamily("nkprobe_probes_answered", "Latency probes answered.", labels=labels),
        HistogramFamily("nkprobe_rtt_seconds", "Latency probe round-trip times.", labels=labels),
        GaugeFamily(
            "nkprobe_target_up", "1 if the latest latency probes got an answer.", labels=TARGET_LABELS
        ),
        GaugeFamily(
            "nkprobe_path_upstream",
            "1 for the current upstream tag of the path, 0 for every other.",
            labels=[*TARGET_LABELS, "upstream"],
        ),
        GaugeFamily(
            "nkprobe_path_upstream_ratio",
            "Share of the flows traced in the latest round that used each upstream.",
            labels=[*TARGET_LABELS, "upstream"],
        ),
        CounterFamily("nkprobe_path_changes", "Upstream changes seen.", labels=TARGET_LABELS),
        GaugeFamily(
            "nkprobe_path_last_change_timestamp_seconds",
            "When the last upstream change was seen (Unix time; 0: none yet).",
            labels=TARGET_LABELS,
        ),
        GaugeFamily(
            "nkprobe_path_hops",
            "IP hops to the destination, or to the last hop that answered (NaN before the first trace).",
            labels=TARGET_LABELS,
        ),
        GaugeFamily(
            "nkprobe_path_reached", "1 if the latest trace reached the destination.", labels=TARGET_LABELS
        ),
        GaugeFamily(
            "nkprobe_border_rtt_seconds",
            'RTT at the last hop before the destination AS (side="upstream") and the first inside it '
            '(side="destination"); NaN when not seen.',
            labels=[*TARGET_LABELS, "side"],
        ),
        GaugeFamily(
            "nkprobe_path_confidence",
            "Confidence in the current upstream tag: 1 two signals agree, 0.5 one signal or a contradicted "
            "tag awaiting confirmation, 0 no tag (unknown); NaN before the first trace.",
            labels=TARGET_LABELS,
        ),
        CounterFamily("nkprobe_traceroutes", "Traceroutes by outcome.", labels=[*TARGET_LABELS, "outcome"]),
    )


def _target_samples(t: TargetSnapshot, tags: tuple[str, ...], traced: bool) -> tuple[list[Sample], ...]:
    """The samples of one target, a list for each of _TargetFamilies, in their order."""
    f = _target_families()
    key = [t.target.address, t.target.prefix]
    for proto in t.probes_sent:
        f.sent.add_metric([*key, proto], float(t.probes_sent.get(proto, 0)))
        f.answered.add_metric([*key, proto], float(t.probes_answered.get(proto, 0)))
        h = t.rtt[proto]
        f.rtt.add_metric([*key, proto], buckets=_buckets(h), sum_value=h.total)
    f.up.add_metric(key, 1.0 if t.up else 0.0)
    # Without traces ([trace] enabled = false: a census) there is no path to report; a census of the /22
    # would otherwise export 20 path series a target that say nothing (issue 25).
    if traced:
        for tag in tags:
            f.upstream.add_metric([*key, tag], 1.0 if t.tag == tag else 0.0)
            f.ratio.add_metric([*key, tag], float(t.ratio.get(tag, 0.0)))
        f.changes.add_metric(key, float(t.changes))
        f.last_change.add_metric(key, t.last_change_at or 0.0)
        f.hops.add_metric(key, nan_if_none(t.hops))
        f.reached.add_metric(key, 1.0 if t.reached else 0.0)
        f.confidence.add_metric(key, CONFIDENCE_VALUES.get(t.confidence or "", math.nan))
        for side, value in t.border_rtt.items():
            f.border.add_metric([*key, side], nan_if_none(value))
        for outcome, n in t.traceroutes.items():
            f.traces.add_metric([*key, outcome], float(n))
    return tuple(family.samples for family in f)


class _PageSamples:
    """The samples of every target of one snapshot, made on the first read (`of`), for the encoders
    that read samples rather than the kept lines (MetricFamily.set_lines)."""

    def __init__(self, s: Snapshot) -> None:
        self._s = s
        self._made: list[list[Sample]] | None = None

    def of(self, family: int) -> list[Sample]:
        if self._made is None:
            s = self._s
            per_target = [_target_samples(t, s.tags, s.traced) for t in s.targets]
            self._made = [
                [x for mine in per_target for x in mine[i]] for i in range(len(_TargetFamilies._fields))
            ]
        return self._made[family]


class _TargetCache:
    """Each target's lines since its TargetSnapshot last changed (Results keeps an unchanged target's
    TargetSnapshot from snapshot to snapshot): a scrape renders the targets that changed only. A census
    page is 1,024 targets, 35k samples and 3.6 MB (issue 25): 150 ms of CPU rendered whole; with this
    cache 8 ms when no target changed, 30 ms when 140 did (15 s of a census at 9.5 probes a second)."""

    def __init__(self) -> None:
        self._by_target: dict[str, tuple[TargetSnapshot, tuple[str, ...], bool, tuple[str, ...]]] = {}

    def families(self, s: Snapshot) -> _TargetFamilies:
        old, new = self._by_target, {}
        blocks: list[list[str]] = [[] for _ in _TargetFamilies._fields]
        for t in s.targets:
            address = t.target.address
            kept = old.get(address)
            if kept is not None and kept[0] is t and kept[1] == s.tags and kept[2] == s.traced:
                lines = kept[3]
            else:
                lines = tuple(
                    "".join(map(sample_line, mine)) for mine in _target_samples(t, s.tags, s.traced)
                )
            new[address] = (t, s.tags, s.traced, lines)
            for i, text in enumerate(lines):
                blocks[i].append(text)
        self._by_target = new  # the targets of this page only: bounded by the config
        families, later = _target_families(), _PageSamples(s)
        for i, family in enumerate(families):
            family.set_lines(blocks[i], partial(later.of, i))
        return families


def _trace_metrics(s: Snapshot) -> MetricFamily:
    duration = HistogramFamily(
        "nkprobe_traceroute_duration_seconds", "Wall time of one trace.", labels=["protocol"]
    )
    for proto, h in s.trace_duration.items():
        duration.add_metric([proto], buckets=_buckets(h), sum_value=h.total)
    return duration


def _bgp_metrics(
    s: Snapshot, bgp: BgpCheck | LiveStatus | None, snapshot: BgpCheck | None
) -> Iterator[MetricFamily]:
    """The control-plane cross-check (agent/bgp): does BGP show the traced upstream next to the
    destination AS for the target's /24? From the live view when it is on, else the [bgp] snapshot; NaN
    while it cannot say (no BGP data for the /24, or the tag is unknown), so the series exists from the
    first scrape."""
    agrees = GaugeFamily(
        "nkprobe_path_upstream_in_bgp",
        "1 if the BGP snapshot shows the traced upstream as a neighbour of the destination AS for the "
        "target's /24, 0 if it does not, NaN when either side cannot tell.",
        labels=TARGET_LABELS,
    )
    for t in s.targets if s.traced else ():
        verdict = bgp.in_bgp(t.target.prefix, t.tag) if bgp else None
        agrees.add_metric([t.target.address, t.target.prefix], nan_if_none(verdict))
    yield agrees
    when = GaugeFamily(
        "nkprobe_bgp_snapshot_timestamp_seconds",
        "Unix time of the BGP snapshot in use (the oldest file); 0 when none is configured or dated.",
    )
    when.add_metric([], (snapshot.view.time or 0.0) if snapshot else 0.0)
    yield when


def _health_metrics(s: Snapshot, history: HistoryStatus | None) -> Iterator[MetricFamily]:
    # The history writer counts its own errors and knows its own fault (None: not running yet, all 0).
    write_errors = history.write_errors if history is not None else 0
    errors = CounterFamily(
        "nkprobe_errors",
        "Faults inside the agent by kind (a failed probe or trace, a failed history write...).",
        labels=["kind"],
    )
    for kind, n in s.errors.items():
        errors.add_metric([kind], float(n + write_errors if kind == "history" else n))
    yield errors
    fault = GaugeFamily(
        "nkprobe_fault",
        "1 while a part of the agent is broken (history store, probing, config).",
        labels=["kind"],
    )
    for kind, on in s.faults.items():
        broken = (history is not None and history.fault) if kind == "history" else on
        fault.add_metric([kind], 1.0 if broken else 0.0)
    yield fault
    yield from _history_metrics(history)
    yield from _reload_metrics(s)


def _history_metrics(history: HistoryStatus | None) -> Iterator[MetricFamily]:
    hist_err = CounterFamily(
        "nkprobe_history_write_errors",
        "Failures to write the path history (each new error once; the changes stay queued and are retried).",
    )
    hist_err.add_metric([], float(history.write_errors if history else 0))
    yield hist_err
    pending = GaugeFamily("nkprobe_history_pending", "Path changes queued, not yet written to disk.")
    pending.add_metric([], float(history.pending if history else 0))
    yield pending
    written = CounterFamily("nkprobe_history_written", "Path changes written to the history.")
    written.add_metric([], float(history.written if history else 0))
    yield written
    dropped = CounterFamily(
        "nkprobe_history_dropped", "Path changes lost because the history queue was full."
    )
    dropped.add_metric([], float(history.dropped if history else 0))
    yield dropped


def _reload_metrics(s: Snapshot) -> Iterator[MetricFamily]:
    triggers = CounterFamily(
        "nkprobe_retrace_triggers",
        "Immediate re-traces asked for by latency probes or local network changes, by reason.",
        labels=["reason"],
    )
    for reason, n in s.retrace_triggers.items():
        triggers.add_metric([reason], float(n))
    yield triggers
    reloads = CounterFamily("nkprobe_config_reloads", "Config reloads (SIGHUP) by result.", labels=["result"])
    for result, n in s.reloads.items():
        reloads.add_metric([result], float(n))
    yield reloads
    ok = GaugeFamily(
        "nkprobe_config_last_reload_successful", "1 if the latest config load or reload was valid."
    )
    ok.add_metric([], 1.0 if s.last_reload_ok else 0.0)
    yield ok
    at = GaugeFamily(
        "nkprobe_config_last_reload_success_timestamp_seconds", "When the config in use was loaded."
    )
    at.add_metric([], s.last_reload_at)
    yield at
