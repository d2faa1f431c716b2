"""The scheduler: asyncio tasks that keep every target's latency probes and traces going.

- Latency probes: one series per target and protocol, all probed in one volley every `ping.interval_s`
  with +-10 % jitter, from a random start offset (a fleet of agents never probes in lockstep: probes of
  many hosts in step add up to bursts at the target). A probe that is still out when the next is due does
  not hold it back (the timeout may exceed the interval), up to a bound of probes in flight. One timer
  for the volleys and a callback per probe, not a task: on a Pi the event loop's wake-ups and a task, a
  future and a timer per probe were most of the agent's CPU (issue 25); a volley is one wake-up to send
  and, its answers read together (agent.probers.Pinger, lazy), about one to read. The budget
  (agent.net.engine) spreads a volley bigger than it allows.
- Traces: one loop per target, a round of `trace.flows` Paris traces (flow ids fixed per target, so round
  after round the same flows cross the same per-flow balancers) every `trace.interval_s` with jitter,
  from a random offset.
- Immediate re-trace: a latency probe whose reply TTL changes, whose RTT moves to a new level, or whose
  target stops answering (agent.tracking.LatencyWatch) wakes the trace loops of every target in
  its /24 (routing is per /24: README, first section); so does a change of our own default route
  (agent.net.localnet). While a new tag waits for confirmation (agent.tracking.TrackedTargets.pending),
  the next round follows after `confirm_delay_s` instead of a whole interval: a flip is confirmed in
  seconds, not minutes.
- The global packet budget (`agent.max_pps`) is enforced where packets leave (agent.net.engine asks
  agent.net.budget before every send), so pings and traces queue there; nothing here can exceed it. At most
  `rounds_in_flight` periodic rounds run at once (urgent ones do not wait for them), so routine traces
  do not crowd out a flip's; the engine serves latency probes before trace packets (agent.net.engine).
- A failing probe or round is counted (nkprobe_errors_total{kind}) and logged, never fatal: the loop
  goes on.

What a probe and a round do (send, record, tag, write the history) is the agent's (agent.agent), and what
they mean is agent.tracking; this module only times them.

Time comes from the event loop (`loop.time()`), so tests run the scheduler on a loop whose clock is
virtual (tests/support/vloop.py) and step through hours in milliseconds, never sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from agent.config import Config, TargetConfig
from agent.errors import RateLog
from agent.model import Trigger
from agent.results import Results

log = logging.getLogger("nkprobe.scheduler")

JITTER = 0.1  # +-10 % of each interval
CONFIRM_DELAY_S = 1.0  # between rounds while a new tag waits for confirmation
MIN_ROUND_GAP_S = 1.0  # between any two rounds of one target: a trigger storm cannot become a trace storm
# Periodic trace rounds running at once, all targets together. A round sends a volley of TTLs per flow as
# fast as the budget allows; with every target's round at once, an urgent round would wait for tokens.
ROUNDS_IN_FLIGHT = 2
# Consecutive exceptions of one probe or trace loop that make nkprobe_fault{kind="probing"} 1 (until every
# loop has succeeded again): one failure is noise, a run of them is a broken socket or a bug.
FAULT_STREAK = 3


ProbeDone = Callable[[Trigger | None, Exception | None], None]
"""Called once when a latency probe is over: the reason to trace its /24 now (or None), or the exception
that failed it."""


class LatencyProbe(Protocol):
    """Start one latency probe of `target`, recorded when it is over, and call `done` then (also with an
    exception that failed it at the start). A timeout is a result, never an exception."""

    def __call__(self, target: TargetConfig, protocol: str, done: ProbeDone) -> None: ...


@dataclass(slots=True, eq=False)
class _Series:
    """The latency probes of one target and protocol: when the next is due, how many are out."""

    target: TargetConfig
    proto: str
    name: str
    cap: int
    in_flight: int = 0
    blocked: bool = False  # due while `cap` probes were out: sent when one is done
    stopped: bool = False  # the scheduler moved on (a reload, the end): its late outcomes are ignored


class TraceRound(Protocol):
    """One round of traces of `target`, recorded and tagged; an exception is a failed round."""

    def __call__(self, target: TargetConfig) -> Awaitable[None]: ...


class _Slots:
    """Periodic rounds take one of `n` slots (waiting in order); urgent rounds (triggered or confirming
    a change) never wait: a flip must not queue behind other targets' routine rounds. Urgent rounds are
    few (one per /24 and change, a trigger wakes a loop at most once per MIN_ROUND_GAP_S), and the
    budget still caps their packets.
    """

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, urgent: bool) -> None:
        if urgent or (self._free > 0 and not self._waiters):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in self._waiters:
                self._waiters.remove(fut)
            elif fut.done() and not fut.cancelled():
                self.release()  # granted and cancelled at once: pass the slot on
            raise

    def release(self) -> None:
        self._free += 1
        while self._free > 0 and self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                self._free -= 1
                fut.set_result(None)


class Scheduler:
    """Owns the probe and trace loops of one config; `run()` until cancelled, `reconfigure()` on SIGHUP.

    What a probe or a round does is the agent's (agent.agent: `probe`, `round`); here is only when each
    runs, and what a failure of one means for the loop (counted, logged, a fault after a streak).
    """

    def __init__(
        self,
        config: Config,
        *,
        results: Results,
        probe: LatencyProbe,
        trace_round: TraceRound,
        pending: Callable[[TargetConfig], bool],
        rng: random.Random | None = None,
        confirm_delay_s: float = CONFIRM_DELAY_S,
        min_round_gap_s: float = MIN_ROUND_GAP_S,
        rounds_in_flight: int = ROUNDS_IN_FLIGHT,
    ) -> None:
        self.results = results
        self._probe = probe
        self._trace_round = trace_round
        self._pending = pending  # a new tag of the target awaits confirmation (agent.tracking)
        self._rng = rng or random.Random()
        self._confirm_delay_s = confirm_delay_s
        self._min_round_gap_s = min_round_gap_s
        self._round_slots = _Slots(rounds_in_flight)
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._series: list[_Series] = []
        self._ping_due = 0.0  # the next volley of latency probes
        self._ping_timer: asyncio.TimerHandle | None = None
        self._log = RateLog(log)
        self._streaks: dict[str, int] = {}  # consecutive failures per loop (nkprobe_fault{kind="probing"})
        self.config = config
        self.rounds_done = 0  # trace rounds completed, for tests and benchmarks

    # -- lifecycle --------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start every loop and wait; cancelling this cancels them."""
        self._start()
        try:
            await asyncio.Event().wait()
        finally:
            await self._stop_loops()

    def _start(self) -> None:
        cfg = self.config
        self._wake = {t.address: asyncio.Event() for t in cfg.targets}
        for t in cfg.targets if cfg.trace.enabled else ():
            self._tasks.append(asyncio.create_task(self._trace_loop(t), name=f"trace {t.address}"))
        self._start_pings()

    async def _stop_loops(self) -> None:
        self._stop_pings()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconfigure(self, config: Config) -> None:
        """Swap to a new (already validated) config: the loops restart with its targets and timing."""
        await self._stop_loops()
        self.config = config
        self._streaks.clear()  # loops start afresh; a fault that persists comes back in FAULT_STREAK tries
        self.results.set_fault("probing", False)
        self._start()

    def trigger(self, reason: Trigger, prefix: str | None = None) -> None:
        """Trace now every target in `prefix` (a /24 as in Target.prefix), or every target if None."""
        self.results.count_trigger(reason.value)
        for t in self.config.targets:
            if prefix is None or t.prefix == prefix:
                event = self._wake.get(t.address)
                if event is not None:
                    event.set()

    # -- faults -----------------------------------------------------------------------------------------

    def _failed(self, loop: str, kind: str, exc: Exception) -> None:
        """A probe or round raised: counted (nkprobe_errors_total{kind}) and logged. FAULT_STREAK in a row
        of one loop is a fault an operator must see."""
        self.results.count_error(kind)
        self._log.warn(loop, "%s failed: %s", loop, exc)
        n = self._streaks.get(loop, 0) + 1
        self._streaks[loop] = n
        if n == FAULT_STREAK:
            self.results.set_fault("probing", True)

    def _succeeded(self, loop: str) -> None:
        if self._streaks.pop(loop, 0) >= FAULT_STREAK and not any(
            v >= FAULT_STREAK for v in self._streaks.values()
        ):
            self.results.set_fault("probing", False)

    # -- latency probes ---------------------------------------------------------------------------------

    def _start_pings(self) -> None:
        interval = self.config.ping.interval_s
        # Probes allowed in flight at once: enough to keep the interval when every probe times out.
        cap = max(1, int(self.config.ping.timeout_s / interval) + 1)
        self._series = [
            _Series(t, proto, f"ping {proto} {t.address}", cap)
            for t in self.config.targets
            for proto in t.ping_protocols
        ]
        loop = asyncio.get_running_loop()
        self._ping_due = loop.time() + self._rng.uniform(0.0, interval)
        self._ping_timer = loop.call_at(self._ping_due, self._ping_volley)

    def _stop_pings(self) -> None:
        for series in self._series:
            series.stopped = True
        self._series = []
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    def _ping_volley(self) -> None:
        """Every series' next probe, at once; the next volley an interval on, jittered, never in the past
        (fell behind, e.g. a short budget: skip, never burst to catch up)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for series in self._series:
            if series.in_flight >= series.cap:
                series.blocked = True  # sent as soon as one of its probes is done (`_ping_done`)
            else:
                self._fire(series)
        interval = self.config.ping.interval_s
        self._ping_due = max(self._ping_due + interval * self._rng.uniform(1.0 - JITTER, 1.0 + JITTER), now)
        self._ping_timer = loop.call_at(self._ping_due, self._ping_volley)

    def _fire(self, series: _Series) -> None:
        """Start one probe of `series`."""
        series.in_flight += 1
        self._probe(series.target, series.proto, lambda trigger, exc: self._ping_done(series, trigger, exc))

    def _ping_done(self, series: _Series, trigger: Trigger | None, exc: Exception | None) -> None:
        if series.stopped:
            return  # a probe of the config before a reload
        series.in_flight -= 1
        if exc is not None:
            self._failed(series.name, "ping", exc)
        else:
            self._succeeded(series.name)
            if trigger is not None:
                target = series.target
                log.info(
                    "%s %s: %s, tracing %s now", series.proto, target.address, trigger.value, target.prefix
                )
                self.trigger(trigger, target.prefix)
        if series.blocked:
            series.blocked = False
            self._fire(series)

    # -- traces -----------------------------------------------------------------------------------------

    async def _trace_loop(self, target: TargetConfig) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake[target.address]
        interval = self.config.trace.interval_s
        # The first round soon (within the first ping interval or five seconds), spread at random.
        delay = self._rng.uniform(0.0, min(interval, max(5.0, self.config.ping.interval_s)))
        urgent = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
            urgent = urgent or wake.is_set()
            wake.clear()
            await self._round_slots.acquire(urgent)
            try:
                started = loop.time()
                await self._one_round(target)
            finally:
                self._round_slots.release()
            # Asked after every round, failed ones too: a change awaiting confirmation before a failed
            # round (or before a reload restarted this loop) still awaits it.
            urgent = self._pending(target)
            delay = interval * self._rng.uniform(1.0 - JITTER, 1.0 + JITTER)
            if urgent:
                delay = self._confirm_delay_s
            # A trigger that came during the round is served after the minimum gap, not dropped.
            gap = self._min_round_gap_s - (loop.time() - started)
            if gap > 0:
                await asyncio.sleep(gap)
                delay = max(0.0, delay - gap)

    async def _one_round(self, target: TargetConfig) -> None:
        name = f"trace {target.address}"
        try:
            await self._trace_round(target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(name, "trace", exc)
            return
        self.rounds_done += 1
        self._succeeded(name)
