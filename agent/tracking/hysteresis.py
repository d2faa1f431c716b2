"""One target's tag with hysteresis: rounds of per-flow tags in, the exported tag and its changes out.

Pure: nothing here reads a clock or a socket. Rounds of traces go in with the time they were seen as a
number; verdicts come out. agent.tracking.targets keeps one `TagHysteresis` per target; the agent
(agent.agent) owns the I/O.

## How a round of traces becomes a tag

A round is the set of Paris traces of one target taken together, one per flow identifier (several flows,
so per-flow load balancers show every path they use; Augustin et al., IMC 2006). Each flow's path has its
own tag (agent/classify/rules.py). The round's *verdict*:

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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
class TagChange:
    """The hysteresis' verdict that a target's upstream changed: the last known tag, the new one, when.
    (agent.tracking.targets.ConfirmedChange adds the target and the round's evidence.)"""

    old: str  # the last known tag before
    new: str
    at: float  # when the confirming round was seen (wall-clock seconds)


@dataclass(frozen=True, slots=True)
class TagStatus:
    """What a `TagHysteresis` shows after a round, as values (the results store and the log read these;
    the live object goes on to the next round)."""

    tag: str  # the exported tag
    tags: tuple[str, ...]  # every value of the `upstream` label
    ratio: Mapping[str, float]  # share of the latest round's classified flows per tag
    changes: int  # confirmed changes of upstream so far
    last_change_at: float | None  # wall-clock seconds of the latest one
    candidate: str | None  # the verdict on a streak (maybe the current tag, or `mixed`)
    streak: int  # agreeing traces of `candidate` so far
    rounds: int  # rounds with a verdict so far


@dataclass(slots=True)
class TagHysteresis:
    """The hysteresis of one target's tag. Step it with `observe(flow_tags, now)`.

    >>> s = TagHysteresis(tags=("cu", "ttk", "other", "unknown"))
    >>> s.observe(["cu"], 0.0), s.tag
    (None, 'unknown')
    >>> s.observe(["cu"], 60.0), s.tag
    (None, 'cu')
    >>> s.observe(["ttk", "cu"], 120.0), s.tag
    (None, 'cu')
    >>> s.observe(["ttk", "ttk"], 121.0)
    TagChange(old='cu', new='ttk', at=121.0)
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

    @property
    def status(self) -> TagStatus:
        """The values of the moment, frozen (a copy of the ratios: the next round replaces them)."""
        return TagStatus(
            tag=self.tag,
            tags=self.tags,
            ratio=dict(self.ratio),
            changes=self.changes,
            last_change_at=self.last_change_at,
            candidate=self.candidate,
            streak=self.streak,
            rounds=self.rounds,
        )

    def observe(self, flow_tags: Sequence[str], now: float) -> TagChange | None:
        """Feed one round's per-flow tags (failed traces left out); a TagChange if one is confirmed."""
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

    def _confirm(self, new: str, now: float) -> TagChange | None:
        self.tag = new
        if new == UNKNOWN:
            return None
        old, self.last_known = self.last_known, new
        if old is None or old == new:
            return None
        self.changes += 1
        self.last_change_at = now
        return TagChange(old=old, new=new, at=now)
