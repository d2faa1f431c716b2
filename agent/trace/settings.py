"""The one trace-settings type: how a Paris traceroute probes, from the config's [trace] to the session.

`TraceSettings` declares every knob of a trace once, with its one default and its one range check. The
three places that carry settings extend it rather than repeat it: the [trace] section of the config
(`agent.config.TraceSection`: plus the round's interval, protocol, port, flows and hysteresis), what a
prober is asked to do (`agent.probers.ProbeSpec`: plus the target and the flows) and one session
(`agent.trace.session.TraceParams`: plus the target and the flow identifier). The settings are built
once, from the config (`agent.config.load_config`) or from the command line (`nkprobe trace
--max-hops`: `dataclasses.replace` of the config's), and `settings_of` carries them unchanged down to
each session.

The fields are keyword-only so that the extending types keep their own positional fields
(`TraceParams(target, protocol, ...)`), and frozen so that a session's parameters hash (its flow is
cached by them: `agent.trace.session.flow_of`).

>>> TraceSettings(gap_limit=7).window
16
>>> TraceSettings(max_hops=0)
Traceback (most recent call last):
    ...
ValueError: max_hops must be 1..255, got 0
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from agent.model import Record, record

S = TypeVar("S", bound="TraceSettings")


@record(slots=True, kw_only=True)
class TraceSettings(Record):
    """Every setting of one Paris traceroute. Durations in seconds."""

    max_hops: int = 32
    timeout_s: float = 2.0  # the wait for a probe while no later TTL has answered
    # The silent-hop rule (agent.trace.session, README "How it measures"): a silent probe is given up
    # after near_factor x the RTT of the nearest later hop that answered, within [silent_min_s,
    # silent_max_s], like traceroute(8)'s -w MAX,HERE,NEAR (NEAR 10 there). The floor covers near
    # routers whose ICMP is slow-pathed (a few ms to tens of ms against a sub-millisecond RTT); the cap
    # bounds the wait on the longest real paths.
    near_factor: float = 3.0
    silent_min_s: float = 0.05
    silent_max_s: float = 1.0
    grace_s: float = 2.0  # the longest wait for silent hops once the destination answered
    retries: int = 1
    gap_limit: int = 5  # a trace ends after this many silent TTLs beyond the last answer
    # New TTLs at most this far past the highest one answered (TTL 1..lookahead to start). Bounds the
    # probes wasted beyond the destination: each costs packet budget, and a UDP target's port
    # unreachables are rate-limited by its kernel (icmp_ratelimit), so a burst past it can hide the real
    # answer. None: the window alone limits (a bare session); the config's [trace] lookahead defaults
    # to gap_limit instead (agent.config.TraceSection), the least that lets a silent stretch end a
    # trace by the gap rule.
    lookahead: int | None = None
    window: int = 16  # most probes in flight at once
    # Deeper TTLs wait until the deepest one out is overdue: pace x the RTT of the deepest answer
    # (agent.trace.session, Session._paced_until); 0: no pacing.
    pace: float = 1.5
    packet_size: int = 0  # total IPv4 length; 0: agent.packets.build.DEFAULT_SIZE

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.max_hops <= 255:
            problems.append(f"max_hops must be 1..255, got {self.max_hops}")
        if self.timeout_s <= 0 or self.grace_s < 0:
            problems.append("timeout_s must be > 0 and grace_s >= 0")
        if self.near_factor <= 0 or not 0 < self.silent_min_s <= self.silent_max_s:
            problems.append("near_factor must be > 0 and 0 < silent_min_s <= silent_max_s")
        if self.retries < 0 or self.gap_limit < 1 or self.window < 1:
            problems.append("retries must be >= 0, gap_limit and window >= 1")
        if self.lookahead is not None and self.lookahead < 1:
            problems.append("lookahead must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))


SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TraceSettings))


def settings_of(value: TraceSettings, **overrides: Any) -> dict[str, Any]:
    """The trace settings held by `value` (any extending type) as keyword arguments, with `overrides`.

    >>> settings_of(TraceSettings(retries=3), max_hops=9)["retries"], settings_of(TraceSettings())["window"]
    (3, 16)
    """
    out = {name: getattr(value, name) for name in SETTINGS_FIELDS}
    out.update(overrides)
    return out


def settings(value: TraceSettings) -> TraceSettings:
    """Just the settings of `value`, as a plain TraceSettings (e.g. to compare two extending values).

    >>> settings(TraceSettings(max_hops=9)) == TraceSettings(max_hops=9)
    True
    """
    return TraceSettings(**settings_of(value))


def with_settings(cls: type[S], value: TraceSettings, **fields_: Any) -> S:
    """A `cls` (a type extending TraceSettings) with the settings of `value` and its own `fields_`
    (which may also override settings).

    >>> with_settings(TraceSettings, TraceSettings(retries=3), max_hops=9)
    TraceSettings(max_hops=9, timeout_s=2.0, near_factor=3.0, silent_min_s=0.05, silent_max_s=1.0, \
grace_s=2.0, retries=3, gap_limit=5, lookahead=None, window=16, pace=1.5, packet_size=0)
    """
    return cls(**settings_of(value, **fields_))
