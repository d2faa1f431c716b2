"""Latency re-trace triggers: one target's latency probe results in, the reason to trace its /24 now out.

`LatencyWatch` follows one target's latency probes (one protocol) and says when to trace again right
away: the reply TTL changed (the path back got longer or shorter), the RTT moved to a new level (the
median of the latest few answers is far from the settled level), or the target stopped answering after it
had answered. Pure: results go in with nothing but their values; agent.tracking.targets keeps one watch
per (target, protocol).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.model import Trigger

__all__ = ["LatencyWatch", "Trigger"]


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
    last: tuple[float, int | None] | None = None  # the latest answer's RTT and reply TTL

    def reset(self) -> None:
        """Forget the old path's levels after a confirmed change of upstream, so a flip back is news
        again; keep the latest answer's TTL and RTT as levels seen lately. The change was confirmed by
        traces taken after it, so that answer came over the new path; without it, the first `window`
        answers after the reset would set the level, and a flip back among them (the NAT lab flips back
        a second after the change shows) set the old path's level as the new one, unseen until the
        periodic trace."""
        self.recent.clear()
        self.medians.clear()
        self.ttls.clear()
        self.ttl_candidate, self.ttl_streak = None, 0
        self.losses, self.answered = 0, False
        if self.last is not None:
            rtt_s, reply_ttl = self.last
            self.medians.append(rtt_s)
            if reply_ttl is not None:
                self.ttls.append(reply_ttl)

    def observe(self, rtt_s: float | None, reply_ttl: int | None) -> Trigger | None:
        """One probe's result (rtt None: lost); the trigger it fires, if any."""
        if rtt_s is None:
            self.losses += 1
            if self.answered and self.losses == self.loss_limit:
                return Trigger.UNREACHABLE  # once per outage: the count goes past the limit afterwards
            return None
        came_back = self.losses >= self.loss_limit and self.answered
        self.losses, self.answered = 0, True
        self.last = (rtt_s, reply_ttl)
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
        median = _median(self.recent)
        seen = self.medians
        new = bool(seen) and all(abs(median - m) > max(self.rtt_abs_s, self.rtt_rel * m) for m in seen)
        self._remember(seen, median)
        return Trigger.RTT_LEVEL if new else None


def _median(values: deque[float]) -> float:
    """statistics.median, without the module: it imports fractions and decimal, 0.3 MiB resident in an
    agent that needs one median per probe (issue 25)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
