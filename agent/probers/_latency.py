"""One latency probe (ICMP echo or TCP SYN) over the shared engine: the code ping.py and tcp.py share.

A latency probe is a single packet with an ordinary TTL whose flow (ICMP identifier or TCP source port)
is taken from a range the traceroute flows never use, so pings and traces of the same target run side by
side on one socket set. Answers: an echo reply, a SYN-ACK or a RST count (the RTT and the reply's TTL);
an ICMP error quoting the probe (e.g. !X from a filtering router) is a loss with its "err" letter.
"""

from __future__ import annotations

import asyncio
import random
import time

from agent.errors import UsageError
from agent.model import UNREACHABLE_ERR, PingResult, Protocol, ReplyKind
from agent.net.clock import receive_time
from agent.net.engine import ProbeEngine
from agent.packets.build import FlowSpec, ProbeBuilder
from agent.packets.parse import ParsedReply
from agent.probers.base import ProbeSpec
from agent.trace.flow import MAX_FLOW_ID, flow_spec

# Flow ids MAX_FLOW_ID-255..MAX_FLOW_ID: TCP source ports 65280..65535, ICMP identifiers 0x5EB8..0x5FB7
# (agent.trace.flow.ICMP_ID_BASE + flow id); traces use flow ids from 0 upward (a few dozen at most), so
# the two never meet. One flow per probe in flight: at most len(LATENCY_FLOWS) probes toward one target.
LATENCY_FLOWS = range(MAX_FLOW_ID - 255, MAX_FLOW_ID + 1)
ANSWERS = (ReplyKind.ECHO_REPLY, ReplyKind.TCP_SYNACK, ReplyKind.TCP_RST)


def _free_flow(
    engine: ProbeEngine, protocol: Protocol, dst: str, port: int | None, src: str | None
) -> tuple[FlowSpec, tuple[Protocol, str, tuple[int, int]]]:
    start = random.randrange(len(LATENCY_FLOWS))
    for i in range(len(LATENCY_FLOWS)):
        flow_id = LATENCY_FLOWS[(start + i) % len(LATENCY_FLOWS)]
        spec = flow_spec(protocol, dst, flow_id, src=src, port=port)
        key = (protocol, dst, (spec.sport, spec.dport))
        if not engine.in_use(key):
            return spec, key
    raise UsageError(
        f"more than {len(LATENCY_FLOWS)} {protocol.value} latency probes in flight toward {dst}; "
        "send fewer at once (a longer interval or a shorter timeout)"
    )


async def latency_probe(engine: ProbeEngine, spec: ProbeSpec) -> PingResult:
    protocol = spec.protocol
    src = None if protocol is Protocol.ICMP else engine.source_for(spec.target)
    flow, key = _free_flow(engine, protocol, spec.target, spec.port, src)
    ident = random.randrange(1, 0x10000)
    builder = ProbeBuilder(flow)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[tuple[ParsedReply, float, float]] = loop.create_future()

    def on_reply(reply: ParsedReply, rx_time: float, read_at: float) -> None:
        if reply.ident == ident and not answer.done():
            answer.set_result((reply, rx_time, read_at))

    engine.register(key, on_reply)
    sent_wall = time.time()
    try:
        sent_at = await engine.send(builder.build(spec.ttl, ident), spec.target, protocol.value)
        sent_wall = time.time()
        try:
            reply, rx_time, read_at = await asyncio.wait_for(answer, spec.timeout_s)
        except TimeoutError:
            return PingResult(spec.target, protocol, sent_wall, None)
    finally:
        engine.unregister(key)
    if reply.kind not in ANSWERS:
        code = reply.icmp_code if reply.icmp_code is not None else -1
        err = (
            UNREACHABLE_ERR.get(code, str(code)) if reply.kind is ReplyKind.UNREACHABLE else reply.kind.value
        )
        return PingResult(spec.target, protocol, sent_wall, None, extra={"err": err, "from": reply.src})
    extra = {"flags": "SA" if reply.kind is ReplyKind.TCP_SYNACK else "R"} if protocol is Protocol.TCP else {}
    rtt = receive_time(rx_time, sent_at, read_at) - sent_at
    return PingResult(spec.target, protocol, sent_wall, max(0.0, rtt), reply_ttl=reply.reply_ttl, extra=extra)
