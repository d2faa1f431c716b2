"""The traceroute prober: drives sans-I/O Paris sessions (agent.trace.Session) over the shared engine.

The driver of agent.trace.session, one per flow, run from the engine's callbacks (`_Driver`): ask the
session for probes, send those the global budget allows right now (the rest come back later), and look
again on the earliest of: a reply for this session, the session's next deadline, or the budget's next
free token. Replies are fed to the session straight from the receive path with their kernel receive
times, so the loop's own wake-up latency never enters an RTT. `spec.flows` flows run concurrently (flow
ids first_flow, first_flow+1, ...), all under the one budget.
"""

from __future__ import annotations

import asyncio
import math
import time

from agent.model import Path
from agent.net.engine import ProbeEngine
from agent.packets.parse import ParsedReply
from agent.probers.base import ProbeSpec
from agent.trace.session import Session, TraceParams, flow_of, session_key
from agent.trace.settings import with_settings

# Never sleep less than this between rounds when the budget is empty (avoids a hot loop on float noise).
MIN_SLEEP_S = 0.0005
STARVED_SLEEP_S = 0.002  # the pause after a refusal while the budget has tokens (_Driver._step)


def params_for(spec: ProbeSpec, flow_id: int, src: str | None) -> TraceParams:
    """The session parameters of one flow of `spec`: its trace settings, unchanged."""
    return with_settings(
        TraceParams, spec, target=spec.target, protocol=spec.protocol, flow_id=flow_id, port=spec.port,
        src=src,
    )  # fmt: skip


class _Driver:
    """Drives one session from the engine's callbacks, not from a coroutine of its own.

    A reply is fed to the session inside the engine's receive callback, and whatever it lets the session
    send (a window slot freed, a retry due) leaves right there; a timer covers the session's next deadline
    and the budget's next token. The awaiting coroutine wakes once, when the path is done. A driver loop
    in a coroutine cost a task step, a future and a timer per wake-up, several times per trace: about a
    fifth of the CPU per probe (bench/trace_bench.py).
    """

    __slots__ = ("_timer", "_timer_at", "engine", "loop", "protocol", "result", "session")

    def __init__(self, engine: ProbeEngine, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.session = session
        self.protocol = session.params.protocol.value
        self.loop = loop
        self.result: asyncio.Future[Path] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # when the armed timer fires, on the engine's clock

    def on_reply(self, reply: ParsedReply, rx_time: float, read_at: float) -> None:
        """The engine's handler for this session's replies (inside its receive callback: never raises)."""
        if self.result.done():
            return  # finished, or cancelled and not yet unregistered
        session = self.session
        try:
            if not session.on_reply(reply, rx_time, read_at=read_at):
                return
            if not (session.done or session.wants_to_send):
                # Nothing to send, but an answer from the destination starts the grace: its end may come
                # before the armed timer (a router's time exceeded changes nothing here).
                deadline = session.next_deadline()
                if deadline is not None and deadline < self._timer_at:
                    self._arm(deadline)
                return
        except Exception as exc:
            self._fail(exc)
            return
        self.step()

    def step(self) -> None:
        """Expire, send what the session wants and the budget allows, then finish or arm the timer."""
        if self.result.done():
            return  # finished, or the awaiting task was cancelled
        try:
            self._step()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """End the trace with `exc`, raised in the awaiting coroutine (never into the engine's loop)."""
        self.cancel_timer()
        self.result.set_exception(exc)

    def _step(self) -> None:
        engine, session = self.engine, self.session
        now = engine.now()
        starved = False  # (next_probes expires what has timed out by `now`, as on_timer does)
        if not session.done:
            for probe in session.next_probes(now):
                sent_at = engine.try_send(probe.data, probe.dst, self.protocol)
                if sent_at is None:
                    starved = True
                    break
                session.sent(probe, sent_at)
        if session.done:
            self.cancel_timer()
            self.result.set_result(session.result())
            return
        now = engine.now()
        deadline = session.next_deadline()
        if starved:
            # Refused: look again at the budget's next token. ProbeEngine.try_send also refuses with
            # tokens free while a latency probe waits in `send` (it goes first); then budget.wait is 0 and
            # a short pause stands in for "until that probe has left", rather than a spin.
            retry = now + (engine.budget.wait(now) or STARVED_SLEEP_S)
            deadline = retry if deadline is None else min(deadline, retry)
        if deadline is None:
            # No deadline and no refusal should not happen while the session runs; look again a probe
            # timeout later rather than never, on a session bug.
            deadline = now + session.params.timeout_s
        self._arm(max(deadline, now + MIN_SLEEP_S))

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # fires no later than needed; `step` then arms the next deadline
            self._timer.cancel()
        self._timer = self.loop.call_later(deadline - self.engine.now(), self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self.step()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf


async def run_session(engine: ProbeEngine, session: Session) -> Path:
    """Drive one session to its end and return its Path."""
    driver = _Driver(engine, session, asyncio.get_running_loop())
    engine.register(session.key, driver.on_reply)
    try:
        driver.step()
        return await driver.result
    finally:
        driver.cancel_timer()
        engine.unregister(session.key)


async def trace_flow(engine: ProbeEngine, spec: ProbeSpec, flow_id: int) -> Path:
    # ICMP needs no source for its checksum, but the result (RIPE "src_addr") wants it.
    src = engine.source_for(spec.target)
    params = params_for(spec, flow_id, src)
    key = session_key(flow_of(params))
    # Consecutive rounds of one flow share the session key: each starts its identities after the last
    # round's, so a late reply to that round never matches a probe of this one.
    session = Session(params, started_at=time.time(), ident_base=engine.ident_base(key))
    try:
        return await run_session(engine, session)
    finally:
        engine.idents_used(key, session.next_ident_base)


async def probe(engine: ProbeEngine, spec: ProbeSpec) -> tuple[Path, ...]:
    """`spec.flows` Paris traceroutes toward `spec.target`, one per flow id, run concurrently."""
    if spec.flows <= 1:
        return (await trace_flow(engine, spec, spec.first_flow),)  # no task and gather for the usual case
    flows = range(spec.first_flow, spec.first_flow + spec.flows)
    paths = await asyncio.gather(*(trace_flow(engine, spec, f) for f in flows))
    return tuple(paths)
