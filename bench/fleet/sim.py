"""A simulated fleet of nkprobe agents: each agent is a real prometheus_client registry holding the agent's
own collector (agent.exporter.collector.SnapshotCollector) over a synthetic Results snapshot, so the metric
families, label sets, histogram buckets and health series are exactly what `nkprobe run` exports.

Pure: every value is a function of (agent index, time), nothing is sent anywhere. bench/fleet/run.py
pushes the exposition text through vmagent into VictoriaMetrics; tests/fleet checks the dashboards'
answers against `expected_*` below.

The scenario (per agent, 8 targets, 2 in each /24 of 175.45.176.0/22, each /24 routed on its own):
- 175.45.176.0/24 via china_unicom, except agent LONE_AGENT, which alone sees transtelecom there
  (a path seen by one vantage only);
- 175.45.177.0/24 via transtelecom;
- 175.45.178.0/24 split per flow (ratio 0.5/0.5); each agent's tag is the flow it happened to keep:
  even agents china_unicom, odd ones transtelecom (no majority);
- 175.45.179.0/24 fails over from china_unicom to transtelecom at `flip_at` (every agent);
- every SILENT_EVERY-th agent stops reporting `silent_for` seconds before the end.
"""

from __future__ import annotations

import itertools
import math
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from agent.exporter.collector import SnapshotCollector
from agent.model import Target
from agent.results import (
    ERROR_KINDS,
    FAULT_KINDS,
    PACKET_PROTOCOLS,
    RELOAD_RESULTS,
    RTT_BUCKETS,
    TRACE_DURATION_BUCKETS,
    Histogram,
    Snapshot,
    TargetSnapshot,
)

TAGS = ("china_unicom", "transtelecom", "other", "unknown")
TRIGGERS = ("reply_ttl", "rtt_level", "unreachable", "local_network")
PING_PROTOCOLS = ("icmp", "tcp")  # agent/data/default-config.toml [ping] protocols
PING_INTERVAL_S = 5.0
TRACE_INTERVAL_S = 60.0
FLOWS = 4
# Two hosts per /24 that answer TCP, as the real ones do.
TARGETS = (
    Target("175.45.176.15", "ns1"),
    Target("175.45.176.71", "kcna"),
    Target("175.45.177.10", "web177"),
    Target("175.45.177.11", "web177b"),
    Target("175.45.178.56", "smtp1"),
    Target("175.45.178.57", "smtp2"),
    Target("175.45.179.69", "smtps"),
    Target("175.45.179.70", "smtps2"),
)
PREFIXES = ("175.45.176.0/24", "175.45.177.0/24", "175.45.178.0/24", "175.45.179.0/24")
LONE_AGENT = 3
SILENT_EVERY = 20  # agents 19, 39, 59, ... go silent
# RTT levels per upstream from the US east coast, as published traceroutes show them.
RTT_S = {"china_unicom": 0.29, "transtelecom": 0.195, "other": 0.25, "unknown": 0.3}


def agent_name(i: int) -> str:
    return f"sim-{i:04d}"


@dataclass(frozen=True)
class Scenario:
    agents: int
    start: float  # Unix time of the first sample
    end: float  # Unix time of the last sample
    flip_at: float  # 175.45.179.0/24 moves to transtelecom
    silent_for: float = 15 * 60.0

    @staticmethod
    def ending_now(agents: int, span_s: float, *, now: float | None = None) -> Scenario:
        end = math.floor((time.time() if now is None else now) / 60) * 60
        return Scenario(agents, end - span_s, end, flip_at=end - span_s / 3)

    def silent(self, i: int) -> bool:
        return i % SILENT_EVERY == SILENT_EVERY - 1

    def reporting(self, i: int, t: float) -> bool:
        return not (self.silent(i) and t > self.end - self.silent_for)

    def tag(self, i: int, prefix: str, t: float) -> str:
        if prefix == "175.45.176.0/24":
            return "transtelecom" if i == LONE_AGENT else "china_unicom"
        if prefix == "175.45.177.0/24":
            return "transtelecom"
        if prefix == "175.45.178.0/24":
            return "china_unicom" if i % 2 == 0 else "transtelecom"
        return "china_unicom" if t < self.flip_at else "transtelecom"


def _cumulative_fractions(centre: float) -> tuple[float, ...]:
    """Share of RTTs at or under each bucket bound: a narrow normal-ish spread (sd 6 ms) around centre."""
    sd = 0.006
    return tuple(0.5 * (1 + math.erf((b - centre) / (sd * math.sqrt(2)))) for b in RTT_BUCKETS)


_FRACTIONS = {tag: _cumulative_fractions(rtt) for tag, rtt in RTT_S.items()}


def _histogram(n: int, tag: str) -> Histogram:
    counts = (*(int(n * f) for f in _FRACTIONS[tag]), n)
    return Histogram(RTT_BUCKETS, counts, n * RTT_S[tag])


def _duration_histogram(n: int) -> Histogram:
    # Traces end in 1-3 s (bench/RESULTS.md "Probe engine"): half under 2 s, all under 3 s.
    counts = (*(0 if b < 1.0 else n // 2 if b < 3.0 else n for b in TRACE_DURATION_BUCKETS), n)
    return Histogram(TRACE_DURATION_BUCKETS, counts, 2.0 * n)


def snapshot(sc: Scenario, i: int, t: float) -> Snapshot:
    """Agent i's state at time t, as its Results would hold it."""
    # Agents started up to 10 minutes apart before the span (a fleet never starts in step).
    started = sc.start - 600 - (zlib.crc32(agent_name(i).encode()) % 600)
    up_s = t - started
    pings = int(up_s / PING_INTERVAL_S)
    rounds = int(up_s / TRACE_INTERVAL_S)
    targets = []
    for target in TARGETS:
        prefix = target.prefix
        tag = sc.tag(i, prefix, t)
        split = prefix == "175.45.178.0/24"
        flipped = prefix == "175.45.179.0/24" and t >= sc.flip_at
        ratio = dict.fromkeys(TAGS, 0.0)
        if split:
            ratio["china_unicom"] = ratio["transtelecom"] = 0.5
        else:
            ratio[tag] = 1.0
        # ~1 % of latency probes unanswered.
        answered = pings - pings // 100
        targets.append(
            TargetSnapshot(
                target=target,
                probes_sent=dict.fromkeys(PING_PROTOCOLS, pings),
                probes_answered=dict.fromkeys(PING_PROTOCOLS, answered),
                rtt={p: _histogram(answered, tag) for p in PING_PROTOCOLS},
                up=True,
                tag=tag,
                ratio=ratio,
                changes=1 if flipped else 0,
                last_change_at=sc.flip_at if flipped else None,
                hops=19 if tag == "china_unicom" else 17,
                reached=True,
                border_rtt={"upstream": RTT_S[tag] - 0.004, "destination": RTT_S[tag] - 0.001},
                traceroutes={"reached": rounds * FLOWS, "unreached": rounds // 50, "error": 0},
            )
        )
    traces = rounds * FLOWS * len(TARGETS)
    return Snapshot(
        agent_name=agent_name(i),
        version="0.1.0",
        trace_protocol="tcp",
        tags=TAGS,
        targets=tuple(targets),
        packets_sent={"icmp": pings * len(TARGETS), "udp": 0, "tcp": pings * len(TARGETS) + traces * 20},
        trace_duration={p: _duration_histogram(traces if p == "tcp" else 0) for p in PACKET_PROTOCOLS},
        errors=dict.fromkeys(ERROR_KINDS, 0),
        faults=dict.fromkeys(FAULT_KINDS, False),
        retrace_triggers=dict.fromkeys(TRIGGERS, 0),
        reloads=dict.fromkeys(RELOAD_RESULTS, 0),
        last_reload_ok=True,
        last_reload_at=started,
        egress_interface="eth0",
        asn_files=("prefix2as.txt.gz",),
        asn_entries=1200,
        asn_snapshot_time=started - 86400,
        started_at=started,
    )


class Agent:
    """One simulated agent: a real registry with the agent's collector over a snapshot we set."""

    def __init__(self, sc: Scenario, i: int) -> None:
        self.sc = sc
        self.i = i
        self.name = agent_name(i)
        self._snap = snapshot(sc, i, sc.start)
        self.registry = CollectorRegistry()
        self.registry.register(SnapshotCollector(lambda: self._snap))

    def exposition(self, t: float) -> bytes:
        """The /metrics body agent i would serve at time t (text format, no timestamps)."""
        self._snap = snapshot(self.sc, self.i, t)
        return generate_latest(self.registry)

    def samples_at(self, t: float) -> bytes:
        """The exposition with every sample stamped at t (milliseconds) and the `agent`, `instance` and
        `job` labels the forwarder adds (deploy/forwarder/forwarder.yml.in), for /api/v1/import/prometheus."""
        stamp = f" {int(t * 1000)}\n".encode()
        return b"".join(line + stamp for line in self.labelled(t))

    def labelled(self, t: float) -> list[bytes]:
        """The exposition's sample lines at time t with the forwarder's labels, without timestamps."""
        extra = f'agent="{self.name}",instance="{self.name}",job="nkprobe"'.encode()
        out = []
        for raw in self.exposition(t).splitlines():
            if not raw or raw.startswith(b"#"):
                continue
            brace = raw.find(b"{")
            space = raw.find(b" ")
            if brace == -1 or brace > space:
                out.append(raw[:space] + b"{" + extra + b"}" + raw[space:])
            elif b'agent="' in raw:
                # The agent's own `agent` label (nkprobe_agent_info) wins, as with honor_labels.
                own = f'instance="{self.name}",job="nkprobe",'.encode()
                out.append(raw[: brace + 1] + own + raw[brace + 1 :])
            else:
                out.append(raw[: brace + 1] + extra + b"," + raw[brace + 1 :])
        return out


def fleet(sc: Scenario) -> list[Agent]:
    return [Agent(sc, i) for i in range(sc.agents)]


def times(sc: Scenario, step_s: float) -> Iterator[float]:
    t = sc.start
    while t <= sc.end + 1e-9:
        yield t
        t += step_s


# -- what the dashboards must answer, from the scenario itself ----------------------------------------


def expected_share(sc: Scenario, t: float) -> dict[tuple[str, str], float]:
    """(prefix, upstream) -> share of the reporting agents whose tag for the /24 is that upstream."""
    live = [i for i in range(sc.agents) if sc.reporting(i, t)]
    out: dict[tuple[str, str], float] = {}
    for prefix in PREFIXES:
        for i in live:
            key = (prefix, sc.tag(i, prefix, t))
            out[key] = out.get(key, 0.0) + 1 / len(live)
    return out


def expected_lone(sc: Scenario, t: float) -> set[tuple[str, str, str]]:
    """(agent, prefix, upstream) seen by one reporting agent only."""
    live = [i for i in range(sc.agents) if sc.reporting(i, t)]
    seen: dict[tuple[str, str], list[int]] = {}
    for prefix in PREFIXES:
        for i in live:
            seen.setdefault((prefix, sc.tag(i, prefix, t)), []).append(i)
    return {(agent_name(v[0]), p, u) for (p, u), v in seen.items() if len(v) == 1}


def expected_silent(sc: Scenario) -> set[str]:
    return {agent_name(i) for i in range(sc.agents) if sc.silent(i)}


# -- fast rendering for backfills ---------------------------------------------------------------------


def _parse(lines: list[bytes]) -> tuple[list[str], list[float]]:
    keys, values = [], []
    for line in lines:
        key, value = line.decode().rsplit(" ", 1)
        keys.append(key)
        values.append(float(value))
    return keys, values


class Backfill:
    """Agent i's samples over [start, end] at any step, fast: the real registry renders the exposition
    at the edges of each regime of the scenario (span start, the flip, the start of silence, span end);
    between two renders every value is interpolated linearly (counters grow linearly, gauges stay put).

    generate_latest costs about 5 ms for an agent's ~750 series, so 1,000 agents x 24 h at 30 s through
    the registry would take hours of CPU; this costs ~0.3 ms a step. tests/fleet checks that, at the
    render points, the output is the registry's own text.
    """

    def __init__(self, sc: Scenario, i: int) -> None:
        agent = Agent(sc, i)
        self.name = agent.name
        self.end = sc.end - sc.silent_for if sc.silent(i) else sc.end
        edges = {sc.start, self.end}
        if sc.start < sc.flip_at < self.end:
            edges |= {sc.flip_at - 1e-3, sc.flip_at}
        renders = []
        keys: list[str] = []
        for t in sorted(edges):
            keys, values = _parse(agent.labelled(t))
            renders.append((t, values))
        renders.append((math.inf, renders[-1][1]))
        # (until, start, values at start, slope per second) for each regime, in time order.
        self.segments: list[tuple[float, float, list[float], list[float]]] = []
        for (ta, va), (tb, vb) in itertools.pairwise(renders):
            slope = [0.0 if tb == math.inf else (b - a) / (tb - ta) for a, b in zip(va, vb, strict=True)]
            self.segments.append((tb, ta, va, slope))
        # One format string for the whole exposition: %r keeps every float exact.
        self._fmt = "".join(f"{k} %r @\n" for k in keys)
        self.series = len(keys)

    def lines_at(self, t: float) -> bytes | None:
        """Import-format text for time t, or None when the agent does not report then."""
        if t > self.end + 1e-6:
            return None
        for until, ta, va, slope in self.segments:
            if t < until - 1e-6 or until == math.inf:
                dt = t - ta
                values = tuple(a + s * dt for a, s in zip(va, slope, strict=True))
                return (self._fmt % values).replace("@", str(int(t * 1000))).encode()
        return None


def expected_disagreeing(sc: Scenario, t: float) -> set[tuple[str, str, str]]:
    """(agent, prefix, upstream) of reporting agents whose tag differs from a >50 % majority."""
    share = expected_share(sc, t)
    out = set()
    for prefix in PREFIXES:
        majority = [u for (p, u), v in share.items() if p == prefix and v > 0.5]
        if not majority:
            continue
        for i in range(sc.agents):
            if sc.reporting(i, t) and sc.tag(i, prefix, t) != majority[0]:
                out.add((agent_name(i), prefix, sc.tag(i, prefix, t)))
    return out
