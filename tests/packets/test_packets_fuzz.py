"""Fuzz the parser and the matcher: random and mutated ICMP/TCP packets, more than 100,000 in all.

The bulk is a plain loop with cheap random mutations of real replies (fast); hypothesis adds shrinkable
cases. Every packet goes through the production receive path, `ProbeEngine.dispatch` (parse, the
engine's `ReplyTable`, `Session.on_reply`), on an engine whose sockets are dummies. Two properties: no
exception escapes, and every packet a session takes as the answer to one of its probes really carries
that probe's identity, checked by an independent reading of the bytes (`carries`), so nothing is
attributed to the wrong probe.
"""

from __future__ import annotations

import random
import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.lab import synth
from agent.model import Protocol
from agent.net.engine import ProbeEngine
from agent.packets.parse import ParsedReply, parse
from agent.trace import Probe, Session, TraceParams
from tests.support.fakewire import fake_engine

DST, SRC = "198.19.178.10", "198.18.0.2"
BULK = 110_000


def carries(packet: bytes, probe: bytes) -> bool:
    """Does `packet` name `probe` (by flow and identity)? Read straight from the bytes, not via parse."""
    ihl = (packet[0] & 0x0F) * 4
    qproto = probe[9]
    if packet[9] == 6:  # a direct TCP answer: from the target, ports swapped, acking our seq + 1
        tcp = packet[ihl:]
        ack = struct.unpack_from("!I", tcp, 8)[0]
        seq = struct.unpack_from("!I", probe, 24)[0]
        return (qproto == 6 and packet[12:16] == probe[16:20] and tcp[0:2] == probe[22:24]
                and tcp[2:4] == probe[20:22] and ack == (seq + 1) & 0xFFFFFFFF)  # fmt: skip
    icmp = packet[ihl:]
    if icmp[0] == 0:  # echo reply: from the target, same identifier and sequence
        return qproto == 1 and packet[12:16] == probe[16:20] and icmp[4:8] == probe[24:28]
    quoted = icmp[8:]
    qihl = (quoted[0] & 0x0F) * 4
    if quoted[16:20] != probe[16:20] or quoted[9] != qproto:
        return False
    transport = quoted[qihl:]
    if qproto == 6:
        return transport[0:8] == probe[20:28]  # ports and sequence number
    if qproto == 1:
        return transport[4:8] == probe[24:28]  # identifier and sequence number
    return transport[0:4] == probe[20:24] and (quoted[4:6] == probe[4:6] or transport[8:10] == probe[28:30])


TOOK: list[tuple[Session, ParsedReply]] = []  # what the sessions' handlers accepted, per dispatch


def handler_of(session: Session) -> object:
    def on_reply(reply: ParsedReply, rx_time: float, read_at: float) -> None:
        if session.on_reply(reply, rx_time, read_at=read_at):
            TOOK.append((session, reply))

    return on_reply


def make_world() -> tuple[ProbeEngine, dict[tuple[object, int], Probe], list[bytes]]:
    """Live sessions (3 protocols x 2 flows, 16 probes each in flight) registered with a real engine, and
    real replies to their probes and to probes of flows nobody runs."""
    engine, _ = fake_engine()
    by_key: dict[tuple[object, int], Probe] = {}
    replies: list[bytes] = []
    for protocol in Protocol:
        for flow_id in (0, 1, 7):
            session = Session(TraceParams(DST, protocol, flow_id=flow_id, src=SRC, window=16, max_hops=16),
                              ident_base=flow_id * 1000)  # fmt: skip
            probes = session.next_probes(0.0)
            for p in probes:
                session.sent(p, 0.0)
            if flow_id != 7:  # flow 7's replies are foreign
                engine.register(session.key, handler_of(session))  # type: ignore[arg-type]
                by_key.update({(session.key, p.ident): p for p in probes})
            for p in probes:
                data = p.data
                replies += [
                    synth.icmp_error(data, "198.18.3.1"),
                    synth.icmp_error(data, "198.18.3.2", quote=None),
                    synth.icmp_error(data, "198.18.3.3", mpls=[(16, 0, True, 1)]),
                    synth.icmp_error(
                        data, "198.18.3.4", mpls=[(17, 1, False, 2), (18, 0, True, 1)], compat=True
                    ),
                    synth.icmp_error(data, DST, icmp_type=3, code=3),
                ]
                if protocol is Protocol.ICMP:
                    replies.append(synth.echo_reply(data))
                elif protocol is Protocol.TCP:
                    replies += [synth.tcp_answer(data), synth.tcp_answer(data, rst=True)]
    return engine, by_key, replies


ENGINE, BY_KEY, REPLIES = make_world()
NASTY = [0, 1, 0x7F, 0x80, 0xFF, 0x45, 0x4F, 0x40, 3, 11, 6, 17, 0x12, 0x14]


def mutate(rng: random.Random, packet: bytes) -> bytes:
    op = rng.randrange(8)
    data = bytearray(packet)
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op == 1:
        del data[rng.randrange(len(data)) :]
    elif op == 2:
        data += rng.randbytes(rng.randint(1, 64))
    elif op == 3:
        return rng.randbytes(rng.randint(0, 200))
    elif op == 4:
        other = rng.choice(REPLIES)
        cut = rng.randrange(min(len(data), len(other)))
        return bytes(data[:cut]) + other[cut:]
    elif op == 5:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(min(len(data), 60))] = rng.choice(NASTY)
    elif op == 6:  # graft another probe's identity bytes: must then match that probe, or nothing
        other = rng.choice(REPLIES)
        start = rng.randrange(20, min(len(data), len(other), 64))
        data[start : start + 4] = other[start : start + 4]
    return bytes(data)


def check(packet: bytes, now: float) -> int:
    """0: not a reply; 1: a reply to nobody's probe; 2: attributed (and checked)."""
    TOOK.clear()
    unmatched = ENGINE.unmatched
    dispatched = ENGINE.dispatch(packet, now)
    if parse(packet) is None:
        assert not dispatched and not TOOK and ENGINE.unmatched == unmatched + 1
        return 0
    if not TOOK:
        return 1
    assert dispatched and len(TOOK) == 1
    session, reply = TOOK[0]
    probe = BY_KEY.get((session.key, reply.ident))
    assert probe is not None, packet.hex()
    assert carries(packet, probe.data), f"attributed to the wrong probe: {packet.hex()}"
    return 2


def test_bulk_random_mutations() -> None:
    rng = random.Random(20261126)
    started = time.process_time()
    outcomes = [0, 0, 0]
    for i in range(BULK):
        packet = mutate(rng, rng.choice(REPLIES)) if i % 10 else rng.randbytes(rng.randint(0, 120))
        outcomes[check(packet, 1.0)] += 1
    # Unmutated: replies to the live flows are attributed, those to flow 7 (nobody's) are foreign.
    assert sorted({check(packet, 1.0) for packet in REPLIES}) == [1, 2]
    assert all(n > BULK // 20 for n in outcomes), outcomes  # every path of the loop was exercised
    assert time.process_time() - started < 30


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    check(data, 1.0)


@settings(max_examples=600, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(REPLIES) - 1),
    st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0, max_value=400),
)
def test_mutated_replies_are_never_misattributed(index: int, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(REPLIES[index])
    for position, value in edits:
        if position < len(data):
            data[position] = value
    check(bytes(data[: max(cut, 1)] if cut < len(data) else data), 1.0)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(REPLIES) - 1), st.binary(min_size=1, max_size=40))
def test_replies_with_garbage_extensions(index: int, tail: bytes) -> None:
    check(REPLIES[index] + tail, 1.0)
