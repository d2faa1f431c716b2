"""What the agent's rounds mean: each target's tag with hysteresis, and the latency watches, for one config.

Pure: nothing here reads a clock or a socket. The agent (agent.agent) traces and pings, tags the paths
and hands them here with the time they were seen as a number; `traced` says what the round showed (as
frozen values) and whether it confirmed a change, `pinged` whether a latency probe asks for a trace now.
The scheduler (agent.scheduler) only decides when each round and probe runs.

One target's state is a TagHysteresis (agent.tracking.hysteresis) and one LatencyWatch
(agent.tracking.latency) per ping protocol. `configure` keeps the hysteresis of every target a new
config keeps (a reload does not send a settled tag back to `unknown`) unless the tag values or the
hysteresis setting changed, and the watch of every (target, protocol) it keeps; the state of targets and
protocols it drops is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.config import Config
from agent.model import LOW, NONE, UNKNOWN, Classification, Path, PingResult, Target, Trigger
from agent.tracking.hysteresis import TagChange, TagHysteresis, TagStatus, tag_values
from agent.tracking.latency import LatencyWatch


@dataclass(frozen=True, slots=True)
class ConfirmedChange:
    """A target's TagChange with the evidence of the round that confirmed it: what the history records
    (as an agent.history.PathChange row)."""

    target: Target
    change: TagChange
    classification: Classification | None
    path: Path | None
    ratio: Mapping[str, float] = field(default_factory=dict)  # share of the round's flows per tag


@dataclass(frozen=True, slots=True)
class RoundFigures:
    """What one round shows besides its tag: figures of the path that carries the current tag."""

    hops: int | None
    reached: bool | None
    border_upstream: float | None
    border_destination: float | None


NO_FIGURES = RoundFigures(None, None, None, None)


def _min_rtt(path: Path, ttl: int) -> float | None:
    for hop in path.hops:
        if hop.ttl == ttl and hop.replies:
            return min(r.rtt_s for r in hop.replies)
    return None


def round_figures(path: Path, classification: Classification | None) -> RoundFigures:
    """Hops, reached and the border RTTs of one path.

    Hops: the TTL that reached the destination, else the highest TTL that answered. Border RTTs: the
    fastest reply at the classifier's border hop (the last hop before the destination AS) and at the
    first hop after it that answered.
    """
    answered = [h.ttl for h in path.hops if h.replies]
    hops: int | None = None
    if path.reached:
        at_target = [h.ttl for h in path.hops if path.target in h.addresses]
        hops = min(at_target) if at_target else (max(answered) if answered else None)
    elif answered:
        hops = max(answered)
    up = down = None
    border = classification.border if classification is not None else None
    if border is not None:
        up = _min_rtt(path, border.hop)
        later = sorted(h.ttl for h in path.hops if h.ttl > border.hop and h.replies)
        if later:
            down = _min_rtt(path, later[0])
    return RoundFigures(hops=hops, reached=path.reached, border_upstream=up, border_destination=down)


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One round of one target, as the metrics show it: values only."""

    status: TagStatus  # the target's tag after the round: tag, ratios, changes, streak
    figures: RoundFigures  # of the path that carries the current tag
    confidence: str | None  # how well this round backs the current tag (None: no flow was classified)
    change: ConfirmedChange | None  # a change this round confirmed
    chosen: tuple[Path, Classification] | None = None  # the path the figures are of, and its tag


class TrackedTargets:
    """The tag hysteresis and latency watches of every target of one config; step it with rounds and
    pings."""

    def __init__(self, config: Config) -> None:
        self._paths: dict[str, TagHysteresis] = {}
        self._watches: dict[tuple[str, str], LatencyWatch] = {}
        self._recheck: set[str] = set()  # targets whose last round confirmed a change (`pending`)
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take the targets of `config`; kept targets keep their state (see the module docstring)."""
        tags, confirm = tag_values(config.upstreams), config.trace.hysteresis
        paths: dict[str, TagHysteresis] = {}
        watches: dict[tuple[str, str], LatencyWatch] = {}
        for t in config.targets:
            ps = self._paths.get(t.address)
            if ps is None or ps.tags != tags or ps.confirm != confirm:
                ps = TagHysteresis(tags=tags, confirm=confirm)
            paths[t.address] = ps
            for proto in t.ping_protocols:
                key = (t.address, proto)
                watches[key] = self._watches[key] if key in self._watches else LatencyWatch()
        self._paths, self._watches = paths, watches

    def pending(self, target: Target) -> bool:
        """A new tag of `target` awaits confirmation: its next round should follow soon."""
        ps = self._paths.get(target.address)
        return ps is not None and (ps.pending or target.address in self._recheck)

    def pinged(self, target: Target, protocol: str, result: PingResult) -> Trigger | None:
        """One latency probe's result; the reason to trace the target's /24 now, if it gives one."""
        watch = self._watches.get((target.address, protocol))
        return None if watch is None else watch.observe(result.rtt_s, result.reply_ttl)

    def traced(
        self, target: Target, classified: Sequence[tuple[Path, Classification]], now: float
    ) -> RoundResult | None:
        """One round's classified paths (traces that failed or could not be classified left out), seen
        at wall-clock `now`; None if the target is no longer configured (a reload while tracing)."""
        ps = self._paths.get(target.address)
        if ps is None:
            return None
        change = ps.observe([c.upstream for _, c in classified], now)
        # One more round soon after a confirmed change: the latency watches forget the old path below, so
        # a flip back within a second (answers already over the old path when the change is confirmed)
        # would settle as their new level and wait for the periodic round; that round sees it at once.
        if change is not None:
            self._recheck.add(target.address)
        else:
            self._recheck.discard(target.address)
        chosen = next(((p, c) for p, c in classified if c.upstream == ps.tag), None)
        if chosen is None and classified:
            chosen = classified[0]
        # The current tag's confidence as this round saw it. A round whose flows all showed another tag
        # (a change awaiting confirmation) backs the current tag less: low, whatever its own confidence.
        confidence: str | None
        if chosen is None:
            confidence = None
        elif ps.tag == UNKNOWN:
            confidence = NONE
        elif chosen[1].upstream == ps.tag:
            confidence = chosen[1].confidence
        else:
            confidence = LOW
        event = None
        if change is not None:
            # The old path's TTL and RTT are history now: forget them, so a flip back soon is news again.
            for (address, _proto), watch in self._watches.items():
                if address == target.address:
                    watch.reset()
            path, classification = chosen if chosen else (None, None)
            event = ConfirmedChange(target, change, classification, path, dict(ps.ratio))
        figures = round_figures(*chosen) if chosen else NO_FIGURES
        return RoundResult(ps.status, figures, confidence, event, chosen)
