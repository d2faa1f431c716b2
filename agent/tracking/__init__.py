"""What a round means, sans-I/O: each target's tracked state, stepped by rounds and latency probes.

- hysteresis: one target's tag with hysteresis (`TagHysteresis`), its frozen `TagStatus` and the
  `TagChange` it confirms; the round verdict and ratios.
- latency: the latency watch (`LatencyWatch`) and the `Trigger`s it fires.
- targets: every target of one config (`TrackedTargets`): a round's `RoundResult` (values only) and the
  `ConfirmedChange` it may carry to the history.

Nothing here reads a clock or a socket; the agent (agent.agent) does the I/O and the scheduler
(agent.scheduler) the timing.
"""

from agent.model import TRIGGERS, Trigger
from agent.tracking.hysteresis import (
    MIXED,
    TagChange,
    TagHysteresis,
    TagStatus,
    ratios,
    round_verdict,
    tag_values,
)
from agent.tracking.latency import LatencyWatch
from agent.tracking.targets import (
    NO_FIGURES,
    ConfirmedChange,
    RoundFigures,
    RoundResult,
    TrackedTargets,
    round_figures,
)

__all__ = [
    "MIXED",
    "NO_FIGURES",
    "TRIGGERS",
    "ConfirmedChange",
    "LatencyWatch",
    "RoundFigures",
    "RoundResult",
    "TagChange",
    "TagHysteresis",
    "TagStatus",
    "TrackedTargets",
    "Trigger",
    "ratios",
    "round_figures",
    "round_verdict",
    "tag_values",
]
