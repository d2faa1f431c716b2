"""The scheduler: asyncio tasks that keep every target's latency probes and traces going.

- Latency probes: one loop per target and protocol, every `ping.interval_s` with +-10 % jitter, from a
  random start offset (a fleet of agents never probes in lockstep: probes of many hosts in step add up to
  bursts at the target). A probe that is still out when the next is due does not hold it back (the timeout
  may exceed the interval), up to a bound of probes in flight.
- Traces: one loop per target, a round of `trace.flows` Paris traces (flow ids fixed per target, so round
  after round the same flows cross the same per-flow balancers) every `trace.interval_s` with jitter,
  from a random offset.
- Immediate re-trace: a latency probe whose reply TTL changes, whose RTT moves to a new level, or whose
  target stops answering (agent.upstream_state.LatencyWatch) wakes the trace loops of every target in
  its /24 (routing is per /24: README, first section); so does a change of our own default route
  (agent.net.localnet). While a new tag waits for confirmation (agent.upstream_state.PathState.pending),
  the next round follows after `confirm_delay_s` instead of a whole interval: a flip is confirmed in
  seconds, not minutes.
- The global packet budget (`agent.max_pps`) is enforced where packets leave (agent.net.engine asks
  agent.net.budget before every send), so pings and traces queue there; nothing here can exceed it. At most
  `rounds_in_flight` periodic rounds run at once (urgent ones do not wait for them), so routine traces
  do not crowd out a flip's; the engine serves latency probes before trace packets (agent.net.engine).
- A failing probe, trace, classification or history write is counted (nkprobe_errors_total{kind}) and
  logged, never fatal: the loop goes on.

Time comes from the event loop (`loop.time()`), so tests run the scheduler on a loop whose clock is
virtual (tests/agent/vloop.py) and step through hours in milliseconds, never sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.config import Config
from agent.model import LOW, NONE, UNKNOWN, Classification, Path, PingResult, Target
from agent.state import State
from agent.trace.rewrite import with_rewrite_evidence
from agent.upstream_state import Change, LatencyWatch, PathState, Trigger, tag_values

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


class Pinger(Protocol):
    """One latency probe; a timeout is a PingResult with rtt_s None, never an exception."""

    def __call__(self, target: Target, protocol: str) -> Awaitable[PingResult]: ...


class Tracer(Protocol):
    """A round: `flows` Paris traces with flow ids first_flow, first_flow+1, ..., one Path each."""

    def __call__(self, target: Target, first_flow: int, flows: int) -> Awaitable[Sequence[Path]]: ...


Classifier = Callable[[Path], Classification]


@dataclass(frozen=True, slots=True)
class PathChange:
    """A confirmed upstream change of one target, with the evidence of the round that confirmed it."""

    target: Target
    change: Change
    classification: Classification | None
    path: Path | None
    ratio: Mapping[str, float] = field(default_factory=dict)  # share of the round's flows per tag


class HistorySink(Protocol):
    """Where confirmed changes go (agent.history); may raise, which is counted as a history fault."""

    def __call__(self, change: PathChange) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class RoundFigures:
    """What one round shows besides its tag: figures of the path that carries the current tag."""

    hops: int | None
    reached: bool | None
    border_upstream: float | None
    border_destination: float | None


def _min_rtt(path: Path, ttl: int) -> float | None:
    for hop in path.hops:
        if hop.ttl == ttl and hop.replies:
            return min(r.rtt_s for r in hop.replies)
    return None


def round_figures(path: Path, classification: Classification | None) -> RoundFigures:
    """Hops, reached and the border RTTs of one path (pure).

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


class _RateLog:
    """Log the 1st, 2nd, 4th, 8th... occurrence of a repeating fault: visible, never a flood."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        if n & (n - 1) == 0:
            log.warning(message + " (occurrence %d)", *args, n)


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
    """Owns the probe and trace loops of one config; `run()` until cancelled, `reconfigure()` on SIGHUP."""

    def __init__(
        self,
        config: Config,
        *,
        state: State,
        pinger: Pinger,
        tracer: Tracer,
        classify: Classifier,
        history: HistorySink | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        confirm_delay_s: float = CONFIRM_DELAY_S,
        min_round_gap_s: float = MIN_ROUND_GAP_S,
        rounds_in_flight: int = ROUNDS_IN_FLIGHT,
    ) -> None:
        self.state = state
        self._pinger = pinger
        self._tracer = tracer
        self._classify = classify
        self._history = history
        self._rng = rng or random.Random()
        self._wall = wall
        self._confirm_delay_s = confirm_delay_s
        self._min_round_gap_s = min_round_gap_s
        self._round_slots = _Slots(rounds_in_flight)
        self._paths: dict[str, PathState] = {}
        self._watches: dict[tuple[str, str], LatencyWatch] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._log = _RateLog()
        self._streaks: dict[str, int] = {}  # consecutive failures per loop (nkprobe_fault{kind="probing"})
        self.config = config
        self.rounds = 0  # trace rounds completed, for tests and benchmarks

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
        tags = tag_values(cfg.upstreams)
        for t in cfg.targets:
            ps = self._paths.get(t.address)
            if ps is None or ps.tags != tags or ps.confirm != cfg.trace.hysteresis:
                self._paths[t.address] = PathState(tags=tags, confirm=cfg.trace.hysteresis)
            self._wake[t.address] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._trace_loop(t), name=f"trace {t.address}"))
            for proto in cfg.ping_protocols_for(t.address):
                self._watches.setdefault((t.address, proto), LatencyWatch())
                self._tasks.append(
                    asyncio.create_task(self._ping_loop(t, proto), name=f"ping {proto} {t.address}")
                )
        kept = {t.address for t in cfg.targets}
        for address in list(self._paths):
            if address not in kept:
                del self._paths[address]
        for key in list(self._watches):
            if key[0] not in kept:
                del self._watches[key]

    async def _stop_loops(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconfigure(self, config: Config) -> None:
        """Swap to a new (already validated) config: loops restart, kept targets keep their path state."""
        await self._stop_loops()
        self.config = config
        self._streaks.clear()  # loops start afresh; a fault that persists comes back in FAULT_STREAK tries
        self.state.set_fault("probing", False)
        self._start()

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait for the history writes in flight (SIGTERM: finish writes, then exit)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout_s)

    def trigger(self, reason: Trigger, prefix: str | None = None) -> None:
        """Trace now every target in `prefix` (a /24 as in Target.prefix), or every target if None."""
        self.state.count_trigger(reason.value)
        for t in self.config.targets:
            if prefix is None or t.prefix == prefix:
                event = self._wake.get(t.address)
                if event is not None:
                    event.set()

    # -- faults -----------------------------------------------------------------------------------------

    def _failed(self, loop: str) -> None:
        """A probe or round raised. FAULT_STREAK in a row of one loop is a fault an operator must see."""
        n = self._streaks.get(loop, 0) + 1
        self._streaks[loop] = n
        if n == FAULT_STREAK:
            self.state.set_fault("probing", True)

    def _succeeded(self, loop: str) -> None:
        if self._streaks.pop(loop, 0) >= FAULT_STREAK and not any(
            v >= FAULT_STREAK for v in self._streaks.values()
        ):
            self.state.set_fault("probing", False)

    # -- latency probes ---------------------------------------------------------------------------------

    async def _ping_loop(self, target: Target, proto: str) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.ping.interval_s
        # Probes allowed in flight at once: enough to keep the interval when every probe times out.
        cap = max(1, int(self.config.ping.timeout_s / interval) + 1)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            await asyncio.sleep(self._rng.uniform(0.0, interval))
            due = loop.time()
            while True:
                while len(in_flight) >= cap:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self._one_ping(target, proto))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                due += interval * self._rng.uniform(1.0 - JITTER, 1.0 + JITTER)
                now = loop.time()
                due = max(due, now)  # fell behind (a slow budget): skip, never burst to catch up
                await asyncio.sleep(due - now)
        finally:
            for task in in_flight:
                task.cancel()

    async def _one_ping(self, target: Target, proto: str) -> None:
        try:
            result = await self._pinger(target, proto)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.state.count_error("ping")
            self._failed(f"ping {proto} {target.address}")
            self._log.warn(
                f"ping {proto} {target.address}", "ping %s %s failed: %s", proto, target.address, exc
            )
            return
        self._succeeded(f"ping {proto} {target.address}")
        self.state.record_ping(result)
        watch = self._watches.get((target.address, proto))
        if watch is None:
            return
        reason = watch.observe(result.rtt_s, result.reply_ttl)
        if reason is not None:
            log.info("%s %s: %s, tracing %s now", proto, target.address, reason.value, target.prefix)
            self.trigger(reason, target.prefix)

    # -- traces -----------------------------------------------------------------------------------------

    async def _trace_loop(self, target: Target) -> None:
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
                await self._round(target)
            finally:
                self._round_slots.release()
            ps = self._paths.get(target.address)
            urgent = ps is not None and ps.pending
            delay = interval * self._rng.uniform(1.0 - JITTER, 1.0 + JITTER)
            if ps is not None and ps.pending:
                delay = self._confirm_delay_s
            # A trigger that came during the round is served after the minimum gap, not dropped.
            gap = self._min_round_gap_s - (loop.time() - started)
            if gap > 0:
                await asyncio.sleep(gap)
                delay = max(0.0, delay - gap)

    async def _round(self, target: Target) -> None:
        cfg = self.config.trace
        try:
            paths = list(await self._tracer(target, 0, cfg.flows))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.state.count_error("trace")
            self._failed(f"trace {target.address}")
            for _ in range(cfg.flows):
                self.state.record_trace_outcome(target.address, "error")
            self._log.warn(f"trace {target.address}", "trace %s failed: %s", target.address, exc)
            return
        self.rounds += 1
        self._succeeded(f"trace {target.address}")
        classified: list[tuple[Path, Classification]] = []
        for path in paths:
            self.state.record_trace(str(path.protocol), path.duration_s)
            self.state.record_trace_outcome(target.address, "reached" if path.reached else "unreached")
            try:
                # A middlebox that rewrote the flow is named in the evidence (and so in the history).
                classified.append((path, with_rewrite_evidence(path, self._classify(path))))
            except Exception as exc:
                self.state.count_error("classify")
                self._log.warn(f"classify {target.address}", "classifying %s failed: %s", target.address, exc)
        ps = self._paths.get(target.address)
        if ps is None:
            return  # removed by a reload while tracing
        change = ps.observe([c.upstream for _, c in classified], self._wall())
        log.debug(
            "%s: round %s -> tag %s (candidate %s x%d)",
            target.address,
            ",".join(c.upstream for _, c in classified),
            ps.tag,
            ps.candidate,
            ps.streak,
        )
        chosen = next(((p, c) for p, c in classified if c.upstream == ps.tag), None)
        if chosen is None and classified:
            chosen = classified[0]
        figures = round_figures(*chosen) if chosen else RoundFigures(None, None, None, None)
        # The current tag's confidence as this round saw it. A round whose flows all showed another tag
        # (a change awaiting confirmation) backs the current tag less: low, whatever its own confidence.
        if chosen is None:
            confidence = None
        elif ps.tag == UNKNOWN:
            confidence = NONE
        elif chosen[1].upstream == ps.tag:
            confidence = chosen[1].confidence
        else:
            confidence = LOW
        self.state.record_path(
            target.address,
            ps,
            hops=figures.hops,
            reached=figures.reached,
            border_rtt={"upstream": figures.border_upstream, "destination": figures.border_destination},
            confidence=confidence,
        )
        if change is not None:
            log.info("%s (%s): upstream %s -> %s", target.address, target.prefix, change.old, change.new)
            # The old path's TTL and RTT are history now: forget them, so a flip back soon is news again.
            for (address, _proto), watch in self._watches.items():
                if address == target.address:
                    watch.reset()
            event = PathChange(
                target,
                change,
                chosen[1] if chosen else None,
                chosen[0] if chosen else None,
                dict(ps.ratio),
            )
            self._write(event)

    def _write(self, event: PathChange) -> None:
        if self._history is None:
            return

        async def write() -> None:
            try:
                await self._history(event)  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.state.record_history_write(False)
                self._log.warn("history", "writing path history failed: %s", exc)
            else:
                self.state.record_history_write(True)

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
