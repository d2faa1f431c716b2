"""The agent's latest results: bounded counters, histograms and gauges, read by the exporter as a snapshot.

The scheduler (event loop thread) writes through the `record_*` methods; the HTTP server (its own
threads) calls `snapshot()`. A lock guards both; a snapshot is an immutable copy, so a scrape never sees
half a round and never waits on a probe (as client_python's custom collectors). Memory is bounded by the
number of targets, protocols and buckets, never by the number of packets (smokeping_prober once leaked memory
per packet).

Every series a snapshot can hold exists from the moment the State is built (counters at 0, gauges that
have no value yet as NaN), so a dashboard's `rate()` and `absent()` see every label set from the start.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from agent.model import HIGH, LOW, NONE, PingResult, Target
from agent.pathstate import TRIGGERS, PathState

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
# What can go wrong inside the agent, counted in nkprobe_errors_total{kind}.
ERROR_KINDS: tuple[str, ...] = ("ping", "trace", "classify", "history", "localnet", "send")
# What can be broken right now, nkprobe_fault{kind} 0/1.
FAULT_KINDS: tuple[str, ...] = ("history", "probing", "config")
RELOAD_RESULTS: tuple[str, ...] = ("success", "failure")
# nkprobe_path_confidence: the classifier's confidence in the current tag as a number, so a dashboard
# can grey out a path below 1 (agent.model HIGH/LOW/NONE; README "How it tags").
CONFIDENCE_VALUES: Mapping[str, float] = {HIGH: 1.0, LOW: 0.5, NONE: 0.0}


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
    history_write_errors: int
    history_pending: int = 0
    history_written: int = 0
    history_dropped: int = 0


ProtocolsFor = Callable[[str], tuple[str, ...]] | Sequence[str]
"""The latency protocols of each target: one list for all, or a function of the address (per-target
overrides, Config.ping_protocols_for)."""


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


class State:
    """The one mutable store of results. Thread-safe; `snapshot()` returns an immutable copy."""

    def __init__(
        self,
        *,
        agent_name: str,
        version: str,
        targets: Iterable[Target],
        ping_protocols: ProtocolsFor,
        trace_protocol: str,
        tags: tuple[str, ...],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._wall = wall
        self._agent_name = agent_name
        self._version = version
        self._trace_protocol = trace_protocol
        self._tags = tags
        self._targets: dict[str, TargetSnapshot] = {
            t.address: _new_target(t, _protocols(ping_protocols, t.address), tags) for t in targets
        }
        self._packets = dict.fromkeys(PACKET_PROTOCOLS, 0)
        self._durations = {p: Histogram.empty(TRACE_DURATION_BUCKETS) for p in PACKET_PROTOCOLS}
        self._errors = dict.fromkeys(ERROR_KINDS, 0)
        self._faults = dict.fromkeys(FAULT_KINDS, False)
        self._triggers = dict.fromkeys(TRIGGERS, 0)
        self._reloads = dict.fromkeys(RELOAD_RESULTS, 0)
        self._last_reload_ok = True
        self._started_at = wall()
        self._last_reload_at = self._started_at
        self._egress = ""
        self._asn_files: tuple[str, ...] = ()
        self._asn_entries: int | None = None
        self._asn_snapshot_time: float | None = None
        self._history_write_errors = 0
        self._history = (0, 0, 0)
        self._history_sink_failed = False
        self._history_writer_failed = False

    # -- configuration -------------------------------------------------------------------------------

    def reconfigure(
        self,
        *,
        agent_name: str,
        targets: Iterable[Target],
        ping_protocols: ProtocolsFor,
        trace_protocol: str,
        tags: tuple[str, ...],
    ) -> None:
        """Apply a reloaded config: targets kept keep their counters, new ones start at zero."""
        with self._lock:
            kept: dict[str, TargetSnapshot] = {}
            for t in targets:
                old = self._targets.get(t.address)
                protocols = _protocols(ping_protocols, t.address)
                if old is None or protocols != tuple(old.probes_sent) or tags != self._tags:
                    kept[t.address] = _new_target(t, protocols, tags)
                else:
                    kept[t.address] = replace(old, target=t)
            self._targets = kept
            self._agent_name = agent_name
            self._trace_protocol = trace_protocol
            self._tags = tags

    def record_reload(self, ok: bool) -> None:
        with self._lock:
            self._reloads["success" if ok else "failure"] += 1
            self._last_reload_ok = ok
            self._faults["config"] = not ok
            if ok:
                self._last_reload_at = self._wall()

    def set_asn_info(
        self, files: Iterable[str], entries: int | None, snapshot_time: float | None = None
    ) -> None:
        with self._lock:
            self._asn_files = tuple(files)
            self._asn_entries = entries
            self._asn_snapshot_time = snapshot_time

    def set_egress(self, interface: str) -> None:
        with self._lock:
            self._egress = interface

    # -- results -----------------------------------------------------------------------------------

    def _update(self, address: str, **changes: object) -> None:
        old = self._targets.get(address)
        if old is not None:  # a result for a target a reload just removed: dropped
            self._targets[address] = replace(old, **changes)  # type: ignore[arg-type]

    def record_packets(self, protocol: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self._packets[protocol] = self._packets.get(protocol, 0) + n

    def record_ping(self, result: PingResult) -> None:
        """One latency probe's answer or loss (its packet is counted where it is sent: record_packets)."""
        proto = str(result.protocol)
        with self._lock:
            t = self._targets.get(result.target)
            if t is None or proto not in t.probes_sent:
                return
            answered = result.rtt_s is not None
            last = {**t.last_answer, proto: answered}
            changes: dict[str, object] = {
                "probes_sent": {**t.probes_sent, proto: t.probes_sent[proto] + 1},
                "last_answer": last,
                "up": any(last.values()),
            }
            if result.rtt_s is not None:
                changes["probes_answered"] = {**t.probes_answered, proto: t.probes_answered[proto] + 1}
                changes["rtt"] = {**t.rtt, proto: t.rtt[proto].observe(result.rtt_s)}
            self._update(result.target, **changes)

    def record_trace(self, protocol: str, duration_s: float) -> None:
        with self._lock:
            hist = self._durations.get(protocol) or Histogram.empty(TRACE_DURATION_BUCKETS)
            self._durations[protocol] = hist.observe(duration_s)

    def record_trace_outcome(self, address: str, outcome: str) -> None:
        with self._lock:
            t = self._targets.get(address)
            if t is not None:
                self._update(address, traceroutes={**t.traceroutes, outcome: t.traceroutes[outcome] + 1})

    def record_path(
        self,
        address: str,
        path_state: PathState,
        *,
        hops: int | None,
        reached: bool | None,
        border_rtt: Mapping[str, float | None],
        confidence: str | None = None,
    ) -> None:
        """The outcome of one round: the hysteresis state after it and the figures of its chosen path.

        `confidence`: the classifier's confidence in the current tag as this round saw it.
        """
        with self._lock:
            t = self._targets.get(address)
            if t is None:
                return
            self._update(
                address,
                tag=path_state.tag,
                ratio={k: path_state.ratio.get(k, 0.0) for k in self._tags},
                changes=path_state.changes,
                last_change_at=path_state.last_change_at,
                hops=hops,
                reached=reached,
                border_rtt={s: border_rtt.get(s) for s in SIDES},
                confidence=confidence,
            )

    def count_error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def count_history_write_error(self) -> None:
        with self._lock:
            self._history_write_errors += 1
            self._errors["history"] += 1

    # nkprobe_fault{kind="history"} has one writer, `_set_history_fault`, fed by both things that can
    # fail: a change handed to the history (the scheduler's sink raised, `record_history_write`) and the
    # writer thread's commits (its status, `set_history_status`). It is 1 while either is failing, so
    # neither side can clear the other's fault.

    def record_history_write(self, ok: bool) -> None:
        """A confirmed change was handed to the history (`ok`) or its sink raised (counted)."""
        with self._lock:
            if not ok:
                self._history_write_errors += 1
                self._errors["history"] += 1
            self._history_sink_failed = not ok
            self._set_history_fault()

    def set_history_status(self, *, pending: int, written: int, dropped: int, fault: bool = False) -> None:
        """The history writer's own status (agent.history.HistoryWriter.status), polled."""
        with self._lock:
            self._history = (pending, written, dropped)
            self._history_writer_failed = fault
            self._set_history_fault()

    def _set_history_fault(self) -> None:
        self._faults["history"] = self._history_sink_failed or self._history_writer_failed

    def set_fault(self, kind: str, on: bool) -> None:
        """nkprobe_fault{kind} for probing and config (history: record_history_write, set_history_status)."""
        if kind == "history":
            raise ValueError("the history fault is derived: use record_history_write or set_history_status")
        with self._lock:
            self._faults[kind] = on

    def count_trigger(self, reason: str) -> None:
        with self._lock:
            self._triggers[reason] = self._triggers.get(reason, 0) + 1

    # -- reading -----------------------------------------------------------------------------------

    def target(self, address: str) -> TargetSnapshot | None:
        with self._lock:
            return self._targets.get(address)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                agent_name=self._agent_name,
                version=self._version,
                trace_protocol=self._trace_protocol,
                tags=self._tags,
                targets=tuple(self._targets.values()),
                packets_sent=dict(self._packets),
                trace_duration=dict(self._durations),
                errors=dict(self._errors),
                faults=dict(self._faults),
                retrace_triggers=dict(self._triggers),
                reloads=dict(self._reloads),
                last_reload_ok=self._last_reload_ok,
                last_reload_at=self._last_reload_at,
                egress_interface=self._egress,
                asn_files=self._asn_files,
                asn_entries=self._asn_entries,
                asn_snapshot_time=self._asn_snapshot_time,
                started_at=self._started_at,
                history_write_errors=self._history_write_errors,
                history_pending=self._history[0],
                history_written=self._history[1],
                history_dropped=self._history[2],
            )


def nan_if_none(value: float | None) -> float:
    """Gauges with no value yet are exported as NaN, so the series exists but plots nothing."""
    return math.nan if value is None else float(value)
