"""The traceroute prober: drives sans-I/O Paris sessions (agent.trace.Session) over the shared engine.

The driver loop of agent.trace.session, one coroutine per flow: ask the session for probes, send those
the global budget allows right now (the rest come back next round), then sleep until the earliest of: a
reply for this session, the session's next deadline, or the budget's next free token. Replies are fed to
the session straight from the receive path with their kernel receive times, so the loop's own wake-up
latency never enters an RTT. `spec.flows` flows run concurrently (flow ids first_flow, first_flow+1, ...),
all under the one budget.
"""

from __future__ import annotations

import asyncio
import time

from agent.model import Path, ReplyKind
from agent.net.engine import ProbeEngine
from agent.packets.parse import ParsedReply
from agent.probers.base import ProbeSpec
from agent.trace.session import Session, TraceParams, flow_of, session_key

# Never sleep less than this between rounds when the budget is empty (avoids a hot loop on float noise).
MIN_SLEEP_S = 0.0005
STARVED_SLEEP_S = 0.002  # the pause after a refusal while the budget has tokens (see run_session)


def params_for(spec: ProbeSpec, flow_id: int, src: str | None) -> TraceParams:
    return TraceParams(
        target=spec.target,
        protocol=spec.protocol,
        flow_id=flow_id,
        port=spec.port,
        src=src,
        max_hops=spec.max_hops,
        timeout_s=spec.timeout_s,
        grace_s=spec.grace_s,
        grace_rtt_factor=spec.grace_rtt_factor,
        retries=spec.retries,
        gap_limit=spec.gap_limit,
        lookahead=spec.lookahead,
        packet_size=spec.packet_size,
    )


async def run_session(engine: ProbeEngine, session: Session) -> Path:
    """Drive one session to its end and return its Path."""
    loop = asyncio.get_running_loop()
    wake: asyncio.Future[None] = loop.create_future()

    def on_reply(reply: ParsedReply, rx_time: float, read_at: float) -> None:
        if not session.on_reply(reply, rx_time, read_at=read_at) or wake.done():
            return
        # Wake the loop only when the reply changes what it must do: the session ended, it may send
        # again, or the reply ends the path (the grace deadline is now earlier than any probe timeout).
        # A time exceeded from a router changes none of these, and waking for each one costs a loop turn.
        if session.done or reply.kind is not ReplyKind.TIME_EXCEEDED or session.wants_to_send:
            wake.set_result(None)

    def on_timeout(fut: asyncio.Future[None]) -> None:
        if not fut.done():
            fut.set_result(None)

    protocol = session.params.protocol.value
    engine.register(session.key, on_reply)
    try:
        while True:
            now = engine.now()
            session.on_timer(now)
            if session.done:
                break
            starved = False
            for probe in session.next_probes(now):
                sent_at = engine.try_send(probe.data, probe.dst, protocol)
                if sent_at is None:
                    starved = True
                    break
                session.sent(probe, sent_at)
            now = engine.now()
            waits = []
            deadline = session.next_deadline()
            if deadline is not None:
                waits.append(deadline - now)
            if starved:
                # Refused: wait for the budget's next token. ProbeEngine.try_send also refuses with tokens
                # free while a latency probe waits in `send` (it goes first); then budget.wait is 0 and a
                # short pause stands in for "until the probe has left", rather than a spin.
                waits.append(engine.budget.wait(now) or STARVED_SLEEP_S)
            # No deadline and no refusal should not happen while the session runs; wake up once a probe
            # timeout later anyway rather than sleep forever on a session bug.
            delay = max(min(waits), MIN_SLEEP_S) if waits else session.params.timeout_s
            if wake.done():
                wake = loop.create_future()
                continue  # a reply came while we were sending: look again at once
            handle = loop.call_later(delay, on_timeout, wake)
            await wake
            handle.cancel()
            wake = loop.create_future()
    finally:
        engine.unregister(session.key)
    return session.result()


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
    flows = range(spec.first_flow, spec.first_flow + max(1, spec.flows))
    paths = await asyncio.gather(*(trace_flow(engine, spec, f) for f in flows))
    return tuple(paths)
