"""Which upstream each target used over a window (the status page's 24 h timeline). Pure: numbers in.

The history (agent.history) holds one row per confirmed change from one known upstream to another; a
target's first tag is a discovery, not a change, and a spell of `unknown` is not recorded either
(agent/tracking/hysteresis.py). So a lane is drawn from what is known and nothing else:

- the tag in force when the window opens is the new tag of the last change before it;
- without one, the old tag of the first change in the window was in force before it, known here only
  from the agent's start if that change came in this run (a change of an earlier run says nothing about
  how long its old tag had lasted);
- the current tag, when it is known and differs from the history's last (a discovery in this run),
  from the start of this run on;
- no segment where none of these speaks: the page shows that stretch as "no data".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.model import UNKNOWN


@dataclass(frozen=True, slots=True)
class Step:
    """One confirmed change: at `time` the upstream went from `old` (None: not known) to `new`."""

    time: float
    old: str | None
    new: str


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    upstream: str


def segments(
    *,
    start: float,
    now: float,
    started_at: float,
    current: str,
    before: str | None,
    steps: Sequence[Step],
    complete: bool = True,
) -> list[Segment]:
    """The spans of [start, now] with a known upstream, oldest first.

    `before`: the new tag of the last change before `start` (None: none); `steps`: the changes inside
    the window, oldest first; `complete` False when `steps` holds only the newest of them (the page's
    bound), so the stretch before the first step kept is unknown.

    >>> segments(start=0, now=100, started_at=0, current="cu", before="ttk", steps=[Step(40, "ttk", "cu")])
    [Segment(start=0, end=40, upstream='ttk'), Segment(start=40, end=100, upstream='cu')]
    >>> segments(start=0, now=100, started_at=30, current="cu", before=None, steps=[])
    [Segment(start=30, end=100, upstream='cu')]
    >>> segments(start=0, now=100, started_at=30, current="unknown", before=None, steps=[])
    []
    """
    events: list[tuple[float, str]] = []
    if before is not None and complete:
        events.append((start, before))
    if steps:
        first = steps[0]
        if not events and complete and first.old is not None and first.time >= started_at:
            events.append((max(start, started_at), first.old))
        events.extend((s.time, s.new) for s in steps)
    if current != UNKNOWN and (not events or events[-1][1] != current):
        events.append((max(start, started_at, events[-1][0] if events else start), current))
    events.sort(key=lambda e: e[0])
    out: list[Segment] = []
    for i, (t, tag) in enumerate(events):
        begin = max(t, start)
        end = min(events[i + 1][0] if i + 1 < len(events) else now, now)
        if end > begin:
            if out and out[-1].upstream == tag and out[-1].end == begin:
                out[-1] = Segment(out[-1].start, end, tag)
            else:
                out.append(Segment(begin, end, tag))
    return out
