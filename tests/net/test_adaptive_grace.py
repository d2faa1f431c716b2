"""The adaptive grace added to agent.trace.session (TraceParams.grace_rtt_factor), on a stepped clock."""

from __future__ import annotations

import pytest

from agent.model import Protocol, ReplyKind
from agent.packets.parse import ParsedReply
from agent.trace.session import Probe, Session, TraceParams

DST = "198.19.176.10"


def _reply(session: Session, probe: Probe, kind: ReplyKind, src: str) -> ParsedReply:
    f = session.flow
    return ParsedReply(kind, src, 60, 56, Protocol.ICMP, DST, f.sport, f.dport, probe.ident)


@pytest.mark.parametrize(("factor", "expected_end"), [(0.0, 0.52), (3.0, 0.02 + 0.06), (1.0, 0.02 + 0.05)])
def test_silent_hop_is_given_up_after_the_grace(factor: float, expected_end: float) -> None:
    s = Session(TraceParams(DST, Protocol.ICMP, max_hops=3, grace_s=0.5, grace_rtt_factor=factor))
    probes = s.next_probes(0.0)
    assert [p.ttl for p in probes] == [1, 2, 3]
    for p in probes:
        s.sent(p, 0.0)
    s.on_reply(_reply(s, probes[0], ReplyKind.TIME_EXCEEDED, "198.18.0.2"), 0.01)
    s.on_reply(_reply(s, probes[2], ReplyKind.ECHO_REPLY, DST), 0.02)  # TTL 2 stays silent
    assert not s.done
    deadline = s.next_deadline()
    assert deadline == pytest.approx(expected_end)
    s.on_timer(expected_end - 0.001)
    assert not s.done
    s.on_timer(expected_end)
    assert s.done and s.result().reached
    assert [h.silent for h in s.result().hops] == [False, True, False]
