"""The agent's latest results: bounded counters, histograms and gauges, read by the exporter as a snapshot.

The agent and its scheduler (event loop thread) write through the `record_*` methods, with values only
(nothing here knows the tracking core that computes them); the HTTP server (its own threads) calls
`snapshot()`. The path history's health is not here: the exporter reads it from the history writer at
scrape time (agent.history.HistoryWriter.status). Writers change plain values under a lock, and
`snapshot()` freezes them into one immutable Snapshot on the first read after a change: one latency
probe costs a few dict increments, not a new snapshot (about 20 µs each, once the agent's largest cost
per packet), while a scrape still takes a consistent whole, never sees half a round and never waits on a
probe (as client_python's custom collectors). Memory is bounded by the
number of targets, protocols and buckets, never by the number of packets (smokeping_prober once leaked memory
per packet).

Every series a snapshot can hold exists from the moment the Results is built (counters at 0, gauges that
have no value yet as NaN), so a dashboard's `rate()` and `absent()` see every label set from the start.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from agent.model import HIGH, LOW, NONE, TRIGGERS, Classification, Path, PingResult, Target

# Latency probe RTT buckets: fine from 100 to 500 ms, where paths from Europe, America and Asia to
# 175.45.176.0/22 lie (about 180-300 ms from Europe and North America in published traceroutes), coarse
# elsewhere. The lab's paths are shorter.
RTT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.175,
    0.2,
    0.22,
    0.24,
    0.26,
    0.28,
    0.3,
    0.32,
    0.34,
    0.36,
    0.38,
    0.4,
    0.45,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
)
TRACE_DURATION_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)

OUTCOMES: tuple[str, ...] = ("reached", "unreached", "error")
SIDES: tuple[str, ...] = ("upstream", "destination")
PACKET_PROTOCOLS: tuple[str, ...] = ("icmp", "udp", "tcp")
# What can go wrong inside the agent, counted in nkprobe_errors_total{kind} ("history": the history
# writer's own count, read at scrape time, agent.exporter.collector).
ERROR_KINDS: tuple[str, ...] = ("ping", "trace", "classify", "history", "localnet", "send")
# What can be broken right now, nkprobe_fault{kind} 0/1 (history: the writer's status, read at scrape time).
FAULT_KINDS: tuple[str, ...] = ("history", "probing", "config")
RELOAD_RESULTS: tuple[str, ...] = ("success", "failure")
# nkprobe_path_confidence: the classifier's confidence in the current tag as a number, so a dashboard
# can grey out a path below 1 (agent.model HIGH/LOW/NONE; README "How it tags").
CONFIDENCE_VALUES: Mapping[str, float] = {HIGH: 1.0, LOW: 0.5, NONE: 0.0}
# Latency probes kept per target and protocol for the status page's "recent loss" (a few bytes each).
RECENT_PROBES = 20


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts in Prometheus' sense: counts[i] observations <= bounds[i]; then +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # len(bounds) + 1, cumulative, the last one is the +Inf bucket (= count)
    total: float = 0.0

    @staticmethod
    def empty(bounds: tuple[float, ...]) -> Histogram:
        return Histogram(bounds, (0,) * (len(bounds) + 1), 0.0)

    @property
    def count(self) -> int:
        return self.counts[-1]

    def observe(self, value: float) -> Histogram:
        """A new histogram with one more observation.

        >>> h = Histogram.empty((0.1, 0.2)).observe(0.15).observe(0.05)
        >>> h.counts, h.count
        ((1, 2, 2), 2)
        """
        i = bisect.bisect_left(self.bounds, value)
        counts = tuple(c + 1 if j >= i else c for j, c in enumerate(self.counts))
        return Histogram(self.bounds, counts, self.total + value)


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    target: Target
    probes_sent: Mapping[str, int]
    probes_answered: Mapping[str, int]
    rtt: Mapping[str, Histogram]
    up: bool | None  # None: no probe result yet
    tag: str
    ratio: Mapping[str, float]
    changes: int
    last_change_at: float | None
    hops: int | None
    reached: bool | None
    border_rtt: Mapping[str, float | None]
    traceroutes: Mapping[str, int]
    last_answer: Mapping[str, bool] = field(default_factory=dict)  # per protocol, the latest probe
    # How far the latest round backs the current tag (CONFIDENCE_VALUES); None before the first trace.
    confidence: str | None = None
    # For the status page (agent.exporter.status): per protocol the latest RTT (None: lost) and whether
    # each of the latest RECENT_PROBES probes was answered, oldest first; the latest round's path that
    # carries the current tag, with its classification (bounded by max_hops).
    last_rtt: Mapping[str, float | None] = field(default_factory=dict)
    recent: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)
    path: Path | None = None
    classification: Classification | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    agent_name: str
    version: str
    trace_protocol: str
    tags: tuple[str, ...]
    targets: tuple[TargetSnapshot, ...]
    packets_sent: Mapping[str, int]
    trace_duration: Mapping[str, Histogram]
    errors: Mapping[str, int]
    faults: Mapping[str, bool]
    retrace_triggers: Mapping[str, int]
    reloads: Mapping[str, int]
    last_reload_ok: bool
    last_reload_at: float
    egress_interface: str
    asn_files: tuple[str, ...]
    asn_entries: int | None
    asn_snapshot_time: float | None
    started_at: float
    traced: bool = True  # [trace] enabled: without traces, the per-target path series are not exported


ProtocolsFor = Callable[[str], tuple[str, ...]] | Sequence[str]
"""The latency protocols of each target: one list for all, or a function of the address (per-target
overrides: the ping_protocols of each TargetConfig)."""


def _protocols(spec: ProtocolsFor, address: str) -> tuple[str, ...]:
    return tuple(spec(address)) if callable(spec) else tuple(spec)


def _new_target(t: Target, protocols: tuple[str, ...], tags: tuple[str, ...]) -> TargetSnapshot:
    return TargetSnapshot(
        target=t,
        probes_sent=dict.fromkeys(protocols, 0),
        probes_answered=dict.fromkeys(protocols, 0),
        rtt={p: Histogram.empty(RTT_BUCKETS) for p in protocols},
        up=None,
        tag=tags[-1],
        ratio=dict.fromkeys(tags, 0.0),
        changes=0,
        last_change_at=None,
        hops=None,
        reached=None,
        border_rtt=dict.fromkeys(SIDES, None),
        traceroutes=dict.fromkeys(OUTCOMES, 0),
        last_answer={},
    )


class _Live:
    """A histogram being filled: per-bucket (not cumulative) counts, so one observation is one increment;
    `freeze()` makes the cumulative Histogram a snapshot holds."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, frozen: Histogram) -> None:
        self.bounds = frozen.bounds
        cumulative = frozen.counts
        self.counts = [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]
        self.total = frozen.total

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def freeze(self) -> Histogram:
        return Histogram(self.bounds, tuple(itertools.accumulate(self.counts)), self.total)


def _thaw(value: object) -> object:
    """A snapshot field as the live store keeps it: mappings as dicts of their own, histograms as _Live."""
    if isinstance(value, Histogram):
        return _Live(value)
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, _Live):
        return value.freeze()
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _fields(snapshot: Snapshot | TargetSnapshot) -> dict[str, Any]:
    return {f.name: _thaw(getattr(snapshot, f.name)) for f in fields(snapshot) if f.name != "targets"}


class Results:
    """The one mutable store of results. Writers change plain dicts under a lock (a few µs: one per
    latency probe and packet, so this is the agent's hot path); `snapshot()` freezes them into an
    immutable `Snapshot` only when something changed since the last one, so the work of building it is
    done once per scrape, not once per result, and a reader never sees half of an update. Thread-safe."""

    def __init__(
        self,
        *,
        agent_name: str,
        version: str,
        targets: Iterable[Target],
        ping_protocols: ProtocolsFor,
        trace_protocol: str,
        tags: tuple[str, ...],
        traced: bool = True,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._wall = wall
        started = wall()
        first = Snapshot(
            agent_name=agent_name,
            version=version,
            trace_protocol=trace_protocol,
            tags=tags,
            targets=tuple(_new_target(t, _protocols(ping_protocols, t.address), tags) for t in targets),
            packets_sent=dict.fromkeys(PACKET_PROTOCOLS, 0),
            trace_duration={p: Histogram.empty(TRACE_DURATION_BUCKETS) for p in PACKET_PROTOCOLS},
            errors=dict.fromkeys(ERROR_KINDS, 0),
            faults=dict.fromkeys(FAULT_KINDS, False),
            retrace_triggers=dict.fromkeys(TRIGGERS, 0),
            reloads=dict.fromkeys(RELOAD_RESULTS, 0),
            last_reload_ok=True,
            last_reload_at=started,
            egress_interface="",
            asn_files=(),
            asn_entries=None,
            asn_snapshot_time=None,
            started_at=started,
            traced=traced,
        )
        self._top = _fields(first)  # the Snapshot's fields but `targets`
        self._rows = {t.target.address: _fields(t) for t in first.targets}  # per target, in config order
        self._frozen: Snapshot | None = first
        # Each row's TargetSnapshot since its last change: a snapshot re-freezes only the rows that
        # changed (a census changes a few of its 1,024 between scrapes), and an unchanged target is the
        # same object from snapshot to snapshot, which the exporter's per-target cache goes by.
        self._frozen_rows = {t.target.address: t for t in first.targets}

    def _row(self, address: str) -> dict[str, Any] | None:
        """A target's live fields, or None for a result of a target a reload just removed (dropped).
        The caller holds the lock and is about to change it."""
        self._frozen = None
        self._frozen_rows.pop(address, None)
        return self._rows.get(address)

    def _set(self, **changes: object) -> None:
        self._frozen = None
        self._top.update(changes)

    def _bump(self, name: str, key: str, n: int = 1) -> None:
        self._frozen = None
        counts = self._top[name]
        counts[key] = counts.get(key, 0) + n

    # -- configuration -------------------------------------------------------------------------------

    def reconfigure(
        self,
        *,
        agent_name: str,
        targets: Iterable[Target],
        ping_protocols: ProtocolsFor,
        trace_protocol: str,
        tags: tuple[str, ...],
        traced: bool = True,
    ) -> None:
        """Apply a reloaded config: targets kept keep their counters, new ones start at zero."""
        with self._lock:
            rows: dict[str, dict[str, Any]] = {}
            for t in targets:
                old = self._rows.get(t.address)
                protocols = _protocols(ping_protocols, t.address)
                if old is None or protocols != tuple(old["probes_sent"]) or tags != self._top["tags"]:
                    rows[t.address] = _fields(_new_target(t, protocols, tags))
                else:
                    rows[t.address] = {**old, "target": t}
            self._rows = rows
            self._frozen_rows.clear()
            self._set(agent_name=agent_name, trace_protocol=trace_protocol, tags=tags, traced=traced)

    def record_reload(self, ok: bool) -> None:
        with self._lock:
            self._bump("reloads", "success" if ok else "failure")
            self._top["faults"]["config"] = not ok
            self._set(last_reload_ok=ok)
            if ok:
                self._set(last_reload_at=self._wall())

    def set_asn_info(
        self, files: Iterable[str], entries: int | None, snapshot_time: float | None = None
    ) -> None:
        with self._lock:
            self._set(asn_files=tuple(files), asn_entries=entries, asn_snapshot_time=snapshot_time)

    def set_egress(self, interface: str) -> None:
        with self._lock:
            self._set(egress_interface=interface)

    # -- results -----------------------------------------------------------------------------------

    def record_packets(self, protocol: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self._bump("packets_sent", protocol, n)

    def record_ping(self, result: PingResult) -> None:
        """One latency probe's answer or loss (its packet is counted where it is sent: record_packets)."""
        proto = str(result.protocol)
        with self._lock:
            row = self._row(result.target)
            if row is None or proto not in row["probes_sent"]:
                return
            answered = result.rtt_s is not None
            row["probes_sent"][proto] += 1
            last = row["last_answer"]
            last[proto] = answered
            row["up"] = any(last.values())
            row["last_rtt"][proto] = result.rtt_s
            recent = row["recent"]
            recent[proto] = (*recent.get(proto, ())[1 - RECENT_PROBES :], answered)
            if result.rtt_s is not None:
                row["probes_answered"][proto] += 1
                row["rtt"][proto].observe(result.rtt_s)

    def record_trace(self, protocol: str, duration_s: float) -> None:
        with self._lock:
            self._frozen = None
            durations = self._top["trace_duration"]
            if protocol not in durations:
                durations[protocol] = _Live(Histogram.empty(TRACE_DURATION_BUCKETS))
            durations[protocol].observe(duration_s)

    def record_trace_outcome(self, address: str, outcome: str) -> None:
        with self._lock:
            row = self._row(address)
            if row is not None:
                row["traceroutes"][outcome] = row["traceroutes"].get(outcome, 0) + 1

    def record_path(
        self,
        address: str,
        *,
        tag: str,
        ratio: Mapping[str, float],
        changes: int,
        last_change_at: float | None,
        hops: int | None,
        reached: bool | None,
        border_rtt: Mapping[str, float | None],
        confidence: str | None = None,
        path: Path | None = None,
        classification: Classification | None = None,
    ) -> None:
        """The outcome of one round: the tag after it (with the latest round's ratio per tag, the changes
        counted so far and when the last was seen) and the figures of its chosen path.

        `confidence`: the tagger's confidence in the current tag as this round saw it. `path` and
        `classification`: that chosen path, for the status page; a round without one keeps the last.
        """
        kept: dict[str, object] = {}
        if path is not None:
            kept = {"path": path, "classification": classification}
        with self._lock:
            row = self._row(address)
            if row is None:
                return
            row.update(
                **kept,
                tag=tag,
                ratio={k: ratio.get(k, 0.0) for k in self._top["tags"]},
                changes=changes,
                last_change_at=last_change_at,
                hops=hops,
                reached=reached,
                border_rtt={s: border_rtt.get(s) for s in SIDES},
                confidence=confidence,
            )

    def count_error(self, kind: str) -> None:
        with self._lock:
            self._bump("errors", kind)

    def set_fault(self, kind: str, on: bool) -> None:
        """nkprobe_fault{kind} for probing and config (history: the writer's status, read at scrape time)."""
        if kind == "history":
            raise ValueError("the history fault is the history writer's own status (HistoryWriter.status)")
        with self._lock:
            self._frozen = None
            self._top["faults"][kind] = on

    def count_trigger(self, reason: str) -> None:
        with self._lock:
            self._bump("retrace_triggers", reason)

    # -- reading -----------------------------------------------------------------------------------

    def target(self, address: str) -> TargetSnapshot | None:
        snap = self.snapshot()
        return next((t for t in snap.targets if t.target.address == address), None)

    def snapshot(self) -> Snapshot:
        """The results as one immutable Snapshot, built on the first read after a change (a scrape reads
        it whole; readers in between share it)."""
        with self._lock:
            if self._frozen is None:
                frozen = self._frozen_rows
                for address, row in self._rows.items():
                    if address not in frozen:
                        frozen[address] = TargetSnapshot(**{k: _freeze(v) for k, v in row.items()})
                targets = tuple(frozen[address] for address in self._rows)
                self._frozen = Snapshot(targets=targets, **{k: _freeze(v) for k, v in self._top.items()})
            return self._frozen


def nan_if_none(value: float | None) -> float:
    """Gauges with no value yet are exported as NaN, so the series exists but plots nothing."""
    return math.nan if value is None else float(value)
