"""The per-target upstream state: one target's tag with hysteresis (its flips), and the latency-based
re-trace triggers.

Pure: nothing here reads a clock or a socket. Rounds of traces and latency probe results go in, with the
time they were seen as a number; verdicts come out. agent.rounds keeps them per target; the agent
(agent.agent) owns the I/O.

## How a round of traces becomes a tag

A round is the set of Paris traces of one target taken together, one per flow identifier (several flows,
so per-flow load balancers show every path they use; Augustin et al., IMC 2006). Each flow's path has its
own tag (agent/classify/tagger.py). The round's *verdict*:

- every classified flow that has evidence (not `unknown`) agrees on one tag: that tag;
- the flows with evidence disagree: `mixed` (a per-flow split, as on 175.45.178.0/24 in December 2025);
- no flow has evidence: `unknown`; no flow was classified at all (every trace failed): no verdict.

Flows tagged `unknown` next to flows with evidence do not dilute the verdict: `unknown` means "this trace
did not show enough", not "this flow took a third path". They still count in the ratios.

The exported tag (nkprobe_path_upstream) moves to a new tag only after `confirm` (default 2; config
`trace.hysteresis`) agreeing traces in a row: rounds with that same verdict, each counting as many
traces as it has flows showing that tag. One odd trace (a route converging mid-trace, a silent border
hop) is not a change; a round whose 4 flows all cross the new upstream is 4 agreeing traces, so a change
found by a latency trigger is confirmed by that round, without waiting for another (agent.scheduler
would otherwise trace again after a second). A round that straddles the change shows both upstreams,
is `mixed`, and confirms nothing. With `trace.flows = 1`, `confirm` counts rounds.

`mixed` is never a tag (the contract's tags are the configured groups, `other` and `unknown`). A mixed
round keeps the current tag and breaks any streak of a different verdict, so a split /24 cannot flap
between its upstreams however its flows fall; its split shows in nkprobe_path_upstream_ratio instead.
A target first seen split (current tag `unknown`) takes, after `confirm` mixed rounds, the tag that
carried most flows over those rounds (ties: the first in the configured group order), and keeps it while
it stays split.

`unknown` verdicts need `confirm` *rounds* (not flows: a lack of evidence must last) to replace a
known tag (the exported tag then says honestly
that the evidence is gone), but moving to or from `unknown` is not a change of upstream: a change is
counted (nkprobe_path_changes_total, one history row) only when the confirmed tag becomes a *known* tag
different from the last known confirmed tag. So A -> unknown -> B counts once, A -> unknown -> A never,
and the first tag ever confirmed is a discovery, not a change.

## Latency re-trace triggers

`LatencyWatch` follows one target's latency probes and says when to trace again right away: the reply TTL
changed (the path back got longer or shorter), the RTT moved to a new level (the median of the latest few
answers is far from the settled level), or the target stopped answering after it had answered.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.model import OTHER, UNKNOWN

MIXED = "mixed"  # a round verdict only; never an exported tag


def tag_values(groups: Iterable[str]) -> tuple[str, ...]:
    """Every value of the `upstream` label: the configured groups in order, then `other`, `unknown`.

    >>> tag_values(["china_unicom", "transtelecom"])
    ('china_unicom', 'transtelecom', 'other', 'unknown')
    """
    out = [g for g in groups if g not in (OTHER, UNKNOWN)]
    return (*dict.fromkeys(out), OTHER, UNKNOWN)


def round_verdict(flow_tags: Sequence[str]) -> str | None:
    """The verdict of one round from its flows' tags (see the module docstring).

    >>> round_verdict(["china_unicom", "unknown", "china_unicom"])
    'china_unicom'
    >>> round_verdict(["china_unicom", "transtelecom"])
    'mixed'
    >>> round_verdict(["unknown", "unknown"])
    'unknown'
    >>> round_verdict([]) is None
    True
    """
    if not flow_tags:
        return None
    known = {t for t in flow_tags if t != UNKNOWN}
    if not known:
        return UNKNOWN
    if len(known) == 1:
        return known.pop()
    return MIXED


def ratios(flow_tags: Sequence[str], tags: Sequence[str]) -> dict[str, float]:
    """Share of the round's classified flows per tag; every tag present, all 0 for an empty round.

    >>> ratios(["a", "a", "b", "unknown"], ["a", "b", "other", "unknown"])
    {'a': 0.5, 'b': 0.25, 'other': 0.0, 'unknown': 0.25}
    """
    counts = Counter(t if t in tags else OTHER for t in flow_tags)
    n = len(flow_tags)
    return {t: (counts[t] / n if n else 0.0) for t in tags}


@dataclass(frozen=True, slots=True)
class Change:
    """A confirmed change of upstream, for the history and the change counter."""

    old: str  # the last known tag before
    new: str
    at: float  # when the confirming round was seen (wall-clock seconds)


@dataclass(slots=True)
class PathState:
    """The hysteresis of one target's tag. Step it with `observe(flow_tags, now)`.

    >>> s = PathState(tags=("cu", "ttk", "other", "unknown"))
    >>> s.observe(["cu"], 0.0), s.tag
    (None, 'unknown')
    >>> s.observe(["cu"], 60.0), s.tag
    (None, 'cu')
    >>> s.observe(["ttk", "cu"], 120.0), s.tag
    (None, 'cu')
    >>> s.observe(["ttk", "ttk"], 121.0)
    Change(old='cu', new='ttk', at=121.0)
    """

    tags: tuple[str, ...]
    confirm: int = 2
    tag: str = UNKNOWN
    last_known: str | None = None
    candidate: str | None = None
    streak: int = 0
    mixed_counts: Counter[str] = field(default_factory=Counter)
    ratio: dict[str, float] = field(default_factory=dict)
    changes: int = 0
    last_change_at: float | None = None
    rounds: int = 0

    def __post_init__(self) -> None:
        if self.confirm < 1:
            raise ValueError("confirm must be at least 1")
        if not self.ratio:
            self.ratio = dict.fromkeys(self.tags, 0.0)

    @property
    def pending(self) -> bool:
        """A different verdict is on a streak but not confirmed yet: worth tracing again soon."""
        return self.candidate is not None and self.candidate not in (self.tag, MIXED)

    def observe(self, flow_tags: Sequence[str], now: float) -> Change | None:
        """Feed one round's per-flow tags (failed traces left out); a Change if one is confirmed."""
        verdict = round_verdict(flow_tags)
        if verdict is None:
            return None  # every trace of the round failed: no evidence either way, streaks untouched
        self.rounds += 1
        self.ratio = ratios(flow_tags, self.tags)
        if verdict != MIXED and verdict not in self.tags:
            verdict = OTHER
        weight = 1  # mixed and unknown rounds count once
        if verdict not in (MIXED, UNKNOWN):
            weight = sum(1 for t in flow_tags if (t if t in self.tags else OTHER) == verdict)
        if verdict == self.candidate:
            self.streak += weight
        else:
            self.candidate, self.streak = verdict, weight
            self.mixed_counts.clear()
        if verdict == MIXED:
            self.mixed_counts.update(t for t in flow_tags if t != UNKNOWN)
            if self.tag != UNKNOWN or self.streak < self.confirm:
                return None  # a split keeps the current tag
            order = {t: i for i, t in enumerate(self.tags)}
            verdict = min(self.mixed_counts, key=lambda t: (-self.mixed_counts[t], order.get(t, len(order))))
            if verdict not in self.tags:
                verdict = OTHER
        elif verdict == self.tag or self.streak < self.confirm:
            return None
        return self._confirm(verdict, now)

    def _confirm(self, new: str, now: float) -> Change | None:
        self.tag = new
        if new == UNKNOWN:
            return None
        old, self.last_known = self.last_known, new
        if old is None or old == new:
            return None
        self.changes += 1
        self.last_change_at = now
        return Change(old=old, new=new, at=now)


class Trigger(StrEnum):
    """Why a latency probe asked for an immediate trace (the `reason` label of the trigger counter)."""

    REPLY_TTL = "reply_ttl"
    RTT_LEVEL = "rtt_level"
    UNREACHABLE = "unreachable"
    LOCAL_NETWORK = "local_network"  # our own default route, source address or link changed


TRIGGERS: tuple[str, ...] = tuple(t.value for t in Trigger)


@dataclass(slots=True)
class LatencyWatch:
    """Re-trace triggers from one target's latency probe results (one protocol).

    - reply TTL: a TTL not seen in the last `memory` answers, seen `ttl_confirm` times in a row;
    - RTT level: the median of the last `window` answers is more than max(`rtt_abs_s`, `rtt_rel` x it)
      away from every such median of the last `memory` answers: a level not seen lately;
    - unreachable: `loss_limit` probes lost in a row after an answer; and again when answers return.

    "Not seen lately" rather than "different from the last": a /24 split per flow (README "How it measures")
    answers a probe stream whose flow varies (TCP source ports) from both paths, so its TTL and RTT alternate
    between two values all the time; both are in the memory, and nothing fires. A flip moves to a value the
    memory does not hold, and fires once. The cost: a flip back within `memory` answers is left to the
    periodic trace.

    >>> w = LatencyWatch(window=3)
    >>> [w.observe(0.100, 60) for _ in range(3)]
    [None, None, None]
    >>> w.observe(0.100, 61), w.observe(0.100, 61)
    (None, <Trigger.REPLY_TTL: 'reply_ttl'>)
    """

    window: int = 5
    memory: int = 30
    rtt_abs_s: float = 0.010
    rtt_rel: float = 0.10
    loss_limit: int = 3
    ttl_confirm: int = 2
    recent: deque[float] = field(default_factory=deque)
    medians: deque[float] = field(default_factory=deque)
    ttls: deque[int] = field(default_factory=deque)
    ttl_candidate: int | None = None
    ttl_streak: int = 0
    losses: int = 0
    answered: bool = False

    def reset(self) -> None:
        """Forget what was seen (after a confirmed change of upstream: the old path's levels are gone)."""
        self.recent.clear()
        self.medians.clear()
        self.ttls.clear()
        self.ttl_candidate, self.ttl_streak = None, 0
        self.losses, self.answered = 0, False

    def observe(self, rtt_s: float | None, reply_ttl: int | None) -> Trigger | None:
        """One probe's result (rtt None: lost); the trigger it fires, if any."""
        if rtt_s is None:
            self.losses += 1
            if self.answered and self.losses == self.loss_limit:
                return Trigger.UNREACHABLE  # once per outage: the count goes past the limit afterwards
            return None
        came_back = self.losses >= self.loss_limit and self.answered
        self.losses, self.answered = 0, True
        if came_back:
            # The target answers again after an outage: the path may well be a new one. Start afresh.
            self.recent.clear()
            self.medians.clear()
            self.ttls.clear()
            self.ttl_candidate, self.ttl_streak = None, 0
        ttl = self._ttl(reply_ttl)
        level = self._rtt(rtt_s)
        if came_back:
            return Trigger.UNREACHABLE
        return ttl or level

    def _remember(self, memory: deque[Any], value: Any) -> None:
        memory.append(value)
        while len(memory) > self.memory:
            memory.popleft()

    def _ttl(self, reply_ttl: int | None) -> Trigger | None:
        if reply_ttl is None:
            return None
        if not self.ttls or reply_ttl in self.ttls:
            self.ttl_candidate, self.ttl_streak = None, 0
            self._remember(self.ttls, reply_ttl)
            return None
        if reply_ttl == self.ttl_candidate:
            self.ttl_streak += 1
        else:
            self.ttl_candidate, self.ttl_streak = reply_ttl, 1
        if self.ttl_streak < self.ttl_confirm:
            return None  # not remembered yet: one odd reply is not a value seen
        for _ in range(self.ttl_streak):
            self._remember(self.ttls, reply_ttl)
        self.ttl_candidate, self.ttl_streak = None, 0
        return Trigger.REPLY_TTL

    def _rtt(self, rtt_s: float) -> Trigger | None:
        self._remember(self.recent, rtt_s)
        while len(self.recent) > self.window:
            self.recent.popleft()
        if len(self.recent) < self.window:
            return None
        median = statistics.median(self.recent)
        seen = self.medians
        new = bool(seen) and all(abs(median - m) > max(self.rtt_abs_s, self.rtt_rel * m) for m in seen)
        self._remember(seen, median)
        return Trigger.RTT_LEVEL if new else None
