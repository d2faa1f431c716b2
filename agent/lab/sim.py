"""A scripted wire: a small fake topology that answers probe bytes, and a driver that runs a session
against it on a stepped clock (time by stepping a number, the wire faked rather than the library: aioquic's
tests, h11's paired connections). No sockets, no sleeping.

The driver doubles as the reference for real drivers (agent.probers): it follows the session protocol
of agent.trace.session exactly, including a packet budget that refuses sends.
"""

from __future__ import annotations

import heapq
import socket
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.lab import synth
from agent.model import Path
from agent.trace.registry import ReplyTable
from agent.trace.session import Session

Routers = Sequence[str | None]


@dataclass
class SimNetwork:
    """Routers at TTL 1..n (None: never answers), then the target at TTL n+1.

    `routers` may be a function of the probe's flow word (UDP/TCP source port, ICMP identifier) to model a
    per-flow load balancer. Other knobs script misbehaviour per TTL.
    """

    routers: Routers | Callable[[int], Routers]
    target: str
    rtt_per_hop_s: float = 0.010
    dest_answers: bool = True
    tcp_closed: bool = False  # the target answers RST instead of SYN-ACK
    unreachable: dict[int, tuple[str, int]] = field(default_factory=dict)  # ttl -> (address, ICMP code)
    drop: Callable[[int, int], bool] | None = None  # (ttl, n-th probe seen at that ttl from 0) -> lost?
    delay: dict[int, float] = field(default_factory=dict)  # ttl -> reply delay override
    duplicate: set[int] = field(default_factory=set)  # ttls whose replies arrive twice
    mpls: dict[int, synth.MplsEntries] = field(default_factory=dict)
    quote: int | None = 8  # transport bytes quoted (None: the whole probe, RFC 1812)
    sent: list[bytes] = field(default_factory=list)  # every probe the driver sent, in order
    _seen: Counter[int] = field(default_factory=Counter)

    def path_for(self, flow_word: int) -> Routers:
        return self.routers(flow_word) if callable(self.routers) else self.routers

    def answer(self, probe: bytes) -> list[tuple[float, bytes]]:
        """The replies to `probe` as (delay after sending, packet)."""
        self.sent.append(probe)
        ttl, proto = probe[8], probe[9]
        ihl = (probe[0] & 0x0F) * 4
        flow_word = struct.unpack_from("!H", probe, ihl + (4 if proto == socket.IPPROTO_ICMP else 0))[0]
        path = self.path_for(flow_word)
        nth = self._seen[ttl]
        self._seen[ttl] += 1
        if self.drop is not None and self.drop(ttl, nth):
            return []
        hop = min(ttl, len(path) + 1)
        delay = self.delay.get(ttl, self.rtt_per_hop_s * hop)
        reply: bytes | None
        if ttl in self.unreachable:
            address, code = self.unreachable[ttl]
            reply = synth.icmp_error(probe, address, icmp_type=3, code=code, quote=self.quote, quoted_ttl=1)
        elif ttl <= len(path):
            router = path[ttl - 1]
            reply = None
            if router is not None:
                reply = synth.icmp_error(probe, router, quote=self.quote, mpls=self.mpls.get(ttl))
        elif not self.dest_answers:
            reply = None
        elif proto == socket.IPPROTO_ICMP:
            reply = synth.echo_reply(probe)
        elif proto == socket.IPPROTO_TCP:
            reply = synth.tcp_answer(probe, rst=self.tcp_closed)
        else:
            quoted_ttl = ttl - len(path)
            reply = synth.icmp_error(probe, self.target, icmp_type=3, code=3, quote=self.quote,
                                     quoted_ttl=quoted_ttl)  # fmt: skip
        if reply is None:
            return []
        return [(delay, reply)] * (2 if ttl in self.duplicate else 1)


def run(
    session: Session,
    network: SimNetwork,
    *,
    start: float = 0.0,
    inject: Sequence[tuple[float, bytes]] = (),
    pps: float | None = None,
    max_steps: int = 100_000,
) -> Path:
    """Drive `session` against `network` until done; `inject` adds raw packets at given times (foreign,
    forged or stray replies); `pps` limits sends like the agent's packet budget."""
    table = ReplyTable()  # the engine's dispatcher: parse, session key, session.on_reply
    table.register(session.key, lambda reply, rx, read_at: session.on_reply(reply, rx, read_at=read_at))
    events: list[tuple[float, int, bytes]] = []
    order = 0
    for at, packet in inject:
        heapq.heappush(events, (at, order, packet))
        order += 1
    now = start
    next_send_at = start
    for _ in range(max_steps):
        if session.done:
            break
        if now >= next_send_at:
            probes = session.next_probes(now)
            if pps is not None:
                probes = probes[:1]
            for probe in probes:
                session.sent(probe, now)
                for delay, packet in network.answer(probe.data):
                    heapq.heappush(events, (now + delay, order, packet))
                    order += 1
                if pps is not None:
                    next_send_at = now + 1.0 / pps
        wakes = [t for t in (session.next_deadline(), events[0][0] if events else None) if t is not None]
        if session.wants_to_send:
            wakes.append(max(next_send_at, now))
        if not wakes:
            break
        now = max(now, min(wakes))
        while events and events[0][0] <= now:
            _, _, packet = heapq.heappop(events)
            table.dispatch(packet, now)
        deadline = session.next_deadline()
        if deadline is not None and deadline <= now:
            session.on_timer(now)
    table.unregister(session.key)
    return session.result()
