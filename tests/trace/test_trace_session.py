"""The Paris traceroute session against a scripted wire (agent.lab.sim) on a stepped clock."""

from __future__ import annotations

import socket
import struct

import pytest

from agent.lab import synth
from agent.lab.sim import SimNetwork, run
from agent.model import Protocol, ReplyKind
from agent.packets.build import ProbeBuilder
from agent.packets.checksum import ones_sum
from agent.packets.parse import parse
from agent.trace import ReplyHandler, ReplyTable, Session, TraceParams, flow_spec

TARGET = "198.19.176.10"
SRC = "198.18.0.2"
R = [f"198.18.1.{i}" for i in range(1, 60)]  # router addresses by TTL - 1


def params(protocol: Protocol = Protocol.UDP, **kw: object) -> TraceParams:
    base: dict[str, object] = {
        "target": TARGET,
        "protocol": protocol,
        "src": SRC,
        "max_hops": 16,
        "window": 8,
    }
    base.update(kw)
    return TraceParams(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", list(Protocol))
def test_reaches_destination_and_records_every_field(protocol: Protocol) -> None:
    net = SimNetwork(R[:4], TARGET, mpls={2: [(16005, 0, True, 1)]})
    session = Session(params(protocol, window=16))
    path = run(session, net)
    assert path.reached and path.stop_reason == "reached"
    assert [h.addresses for h in path.hops] == [(a,) for a in R[:4]] + [(TARGET,)]  # beyond TTL 5 dropped
    first = path.hops[0].replies[0]
    assert first.kind is ReplyKind.TIME_EXCEEDED and (first.icmp_type, first.icmp_code) == (11, 0)
    assert first.rtt_s == pytest.approx(0.010) and first.reply_ttl == 250 and first.quoted_ttl == 1
    assert path.hops[1].replies[0].mpls[0].label == 16005 and path.hops[1].replies[0].mpls[0].bottom
    last = path.hops[4].replies[0]
    expected = {Protocol.UDP: ReplyKind.UNREACHABLE, Protocol.ICMP: ReplyKind.ECHO_REPLY}
    assert last.kind is expected.get(protocol, ReplyKind.TCP_SYNACK)
    assert last.rtt_s == pytest.approx(0.050)
    assert path.flow_id == 0 and path.src == SRC and path.target == TARGET
    assert path.dst_port == (None if protocol is Protocol.ICMP else session.flow.dport)


def test_tcp_rst_counts_as_reached() -> None:
    path = run(Session(params(Protocol.TCP)), SimNetwork(R[:2], TARGET, tcp_closed=True))
    assert path.reached and path.hops[-1].replies[0].kind is ReplyKind.TCP_RST and len(path.hops) == 3


def test_silent_hop_is_retried_and_answer_to_retry_is_recorded() -> None:
    net = SimNetwork(R[:4], TARGET, drop=lambda ttl, nth: ttl == 2 and nth == 0)
    path = run(Session(params(window=1, retries=2, timeout_s=1.0)), net)  # one TTL at a time
    hop = path.hops[1]
    assert hop.probes_sent == 2 and hop.addresses == (R[1],)
    assert hop.replies[0].rtt_s == pytest.approx(0.020)  # measured from the retry's own send time
    assert all(h.probes_sent == 1 for h in path.hops if h.ttl != 2)


def test_retries_then_silent() -> None:
    # Hop 3 never answers; TTLs are sent one at a time, so the destination has not answered yet.
    net = SimNetwork([R[0], R[1], None, R[3]], TARGET)
    path = run(Session(params(window=1, retries=2, timeout_s=1.0)), net)
    assert path.hops[2].silent and path.hops[2].probes_sent == 3
    assert path.reached and len(path.hops) == 5


def test_silent_hop_is_waited_for_a_factor_of_the_nearest_later_answer() -> None:
    # traceroute(8)'s NEAR rule: hop 3 answers at 30 ms, so silent hop 2 gets 3 x 30 ms per probe.
    net = SimNetwork([R[0], None, R[2]], TARGET)
    session = Session(params(timeout_s=2.0, retries=1, near_factor=3.0))
    path = run(session, net)
    assert path.reached and path.hops[1].silent
    assert path.hops[1].probes_sent == 2  # retried once, after the destination had answered
    assert path.duration_s == pytest.approx(2 * 3 * 0.030)
    assert session.done and session.next_deadline() is None


def test_silent_hop_wait_has_a_floor_and_a_cap_and_grace_bounds_the_whole() -> None:
    near = run(Session(params(silent_min_s=0.2)), SimNetwork([None, R[1]], TARGET))
    assert near.hops[0].silent and near.duration_s == pytest.approx(2 * 0.2)  # 3 x 20 ms < the floor
    slow = dict.fromkeys(range(3, 17), 0.5)
    far = SimNetwork([R[0], None, R[2]], TARGET, delay=slow)
    capped = run(Session(params(silent_max_s=0.6)), far)
    assert capped.duration_s == pytest.approx(2 * 0.6)  # 3 x 0.5 s > the cap
    graced = run(Session(params(grace_s=0.3)), SimNetwork([R[0], None, R[2]], TARGET, delay=slow))
    assert graced.reached and graced.duration_s == pytest.approx(0.5 + 0.3)  # destination, then grace_s


def test_without_a_later_answer_the_wait_is_the_timeout() -> None:
    session = Session(params(timeout_s=1.5))
    assert session.silent_wait(3) == 1.5


def test_a_hop_slower_than_the_rule_is_caught_by_the_retry() -> None:
    # Hop 2 answers after 2 x hop 3's RTT (60 ms vs 30 ms). With a factor of 1.5 its first probe is
    # given up at 45 ms; the retry goes out, and the first probe's late answer is recorded meanwhile.
    net = SimNetwork(R[:3], TARGET, delay={2: 0.060})
    session = Session(params(near_factor=1.5, silent_min_s=0.01))
    path = run(session, net)
    hop = path.hops[1]
    assert not hop.silent and hop.probes_sent == 2 and hop.replies[0].rtt_s == pytest.approx(0.060)
    assert session.stats.late == 1
    # Slower than the first wait plus the retry's (2 x 45 ms): given up, reported silent.
    slow = run(Session(params(near_factor=1.5, silent_min_s=0.01)), SimNetwork(R[:3], TARGET, delay={2: 0.2}))
    assert slow.hops[1].silent and slow.duration_s == pytest.approx(0.090)


def test_no_wait_when_nothing_earlier_is_pending() -> None:
    path = run(Session(params(grace_s=5.0)), SimNetwork(R[:3], TARGET))
    assert path.duration_s == pytest.approx(0.040)


def test_gap_limit_stops_after_a_run_of_silent_hops() -> None:
    net = SimNetwork([R[0], R[1]] + [None] * 30, TARGET, dest_answers=False)
    session = Session(params(max_hops=30, gap_limit=3, window=4, retries=1, timeout_s=1.0))
    path = run(session, net)
    assert path.stop_reason == "gap" and not path.reached
    assert len(path.hops) == 5 and all(h.silent for h in path.hops[2:])
    assert session.stats.sent < 30  # stopped early, not at max_hops
    assert all(h.probes_sent == 2 for h in path.hops[2:])


def test_silent_run_followed_by_an_answer_is_not_a_gap() -> None:
    # The lab's TransTeleCom-like chain has a router that never sends time exceeded.
    net = SimNetwork([R[0], None, None, R[3]], TARGET)
    path = run(Session(params(gap_limit=2, window=8)), net)
    assert path.reached and [h.silent for h in path.hops] == [False, True, True, False, False]


def test_gap_waits_for_higher_ttls_in_flight() -> None:
    # TTLs 2-3 time out at 1.0 (a gap of 2) while TTL 4 is still on its way (sent at 0.015: once TTL 3,
    # the deepest out, was overdue by the pacing, 1.5 x hop 1's 10 ms); its answer at 1.01 shows the
    # path goes on, and sending resumes.
    net = SimNetwork([R[0], None, None, R[3]], TARGET, delay={4: 0.995})
    session = Session(params(gap_limit=2, window=3, retries=0, timeout_s=1.0))
    path = run(session, net)
    assert path.reached and path.hops[3].replies[0].rtt_s == pytest.approx(0.995)
    assert len(path.hops) == 5 and path.duration_s == pytest.approx(1.01 + 0.05)


def test_max_hops() -> None:
    path = run(Session(params(max_hops=6, window=3)), SimNetwork(R[:40], TARGET))
    assert path.stop_reason == "max_hops" and not path.reached and len(path.hops) == 6


@pytest.mark.parametrize(("code", "err"), [(0, "N"), (1, "H"), (2, "P"), (9, "A"), (10, "A"), (13, "A")])
def test_unreachable_code_from_a_router_stops_the_trace(code: int, err: str) -> None:
    net = SimNetwork(R[:8], TARGET, unreachable={3: (R[2], code)})
    path = run(Session(params(window=8)), net)
    assert path.stop_reason == "unreachable" and not path.reached
    assert len(path.hops) == 3 and path.hops[2].replies[0].err == err


def test_port_unreachable_from_elsewhere_is_not_reached() -> None:
    net = SimNetwork(R[:8], TARGET, unreachable={4: (R[3], 3)})
    path = run(Session(params()), net)
    assert path.stop_reason == "unreachable" and not path.reached and len(path.hops) == 4


def test_protocol_unreachable_from_the_target_is_reached() -> None:
    net = SimNetwork(R[:8], TARGET, unreachable={4: (TARGET, 2)})
    path = run(Session(params(Protocol.ICMP)), net)
    assert path.reached and len(path.hops) == 4


def test_duplicated_replies_are_counted_not_recorded() -> None:
    session = Session(params())
    path = run(session, SimNetwork(R[:3], TARGET, duplicate={1, 2, 4}))
    assert [len(h.replies) for h in path.hops] == [1, 1, 1, 1]
    assert session.stats.duplicates == 2  # the destination's duplicate came after the session ended
    assert session.stats.after_done >= 1


def test_late_reply_after_timeout_is_recorded_with_its_true_rtt() -> None:
    # Nothing after hop 2 answers, so its wait is the plain timeout; its answer comes during the retry.
    net = SimNetwork([R[0], R[1], None], TARGET, dest_answers=False, delay={2: 2.5})
    session = Session(params(max_hops=3, retries=1, timeout_s=2.0))
    path = run(session, net)
    hop = path.hops[1]
    assert hop.probes_sent == 2 and [r.rtt_s for r in hop.replies] == [pytest.approx(2.5)]
    assert session.stats.late == 1
    assert path.stop_reason == "max_hops"


def test_reordered_replies_land_on_their_own_hops() -> None:
    delays = {ttl: 0.1 - ttl * 0.01 for ttl in range(1, 7)}  # later TTLs answer first
    path = run(Session(params()), SimNetwork(R[:5], TARGET, delay=delays))
    assert [h.addresses for h in path.hops] == [(a,) for a in R[:5]] + [(TARGET,)]
    assert [h.replies[0].rtt_s for h in path.hops] == [pytest.approx(delays[t]) for t in range(1, 7)]


def test_foreign_and_forged_replies_are_ignored() -> None:
    other = ProbeBuilder(flow_spec(Protocol.UDP, TARGET, 9, src=SRC)).build(ttl=2, ident=2)
    ours = Session(params()).next_probes(0.0)[1].data  # same flow, same ident, a different trace
    stray = bytearray(ours)
    stray[4:6] = (4242).to_bytes(2, "big")
    stray[28:30] = (4242).to_bytes(2, "big")
    stray[30:32] = (~4242 & 0xFFFF).to_bytes(2, "big")
    inject = [
        (0.005, synth.icmp_error(other, "203.0.113.9")),  # another flow's probe
        (0.005, synth.icmp_error(bytes(stray), "203.0.113.9")),  # our flow, an identity never sent
        (0.005, b"\x45garbage"),
    ]
    session = Session(params())
    path = run(session, SimNetwork(R[:3], TARGET), inject=inject)
    assert "203.0.113.9" not in {a for h in path.hops for a in h.addresses}
    assert session.stats.unknown_ident == 1 and path.reached


def test_late_reply_to_a_previous_trace_of_the_same_flow_does_not_match() -> None:
    old = Session(params(), ident_base=0)
    probe = old.next_probes(0.0)[0]
    old.sent(probe, 0.0)
    new = Session(params(), ident_base=30000)
    for p in new.next_probes(1.0):
        new.sent(p, 1.0)
    reply = parse(synth.icmp_error(probe.data, R[0]))
    assert reply is not None and not new.on_reply(reply, 1.1)
    assert new.stats.unknown_ident == 1


@pytest.mark.parametrize("first_base", [0, 40000, 0xFFFF - 3])
def test_consecutive_sessions_of_a_flow_use_disjoint_identities(first_base: int) -> None:
    # Each session starts where the previous stopped (wrapping): no identity of one round is reused by
    # the next, retries and probes planned but never sent included.
    net = SimNetwork([R[0], None, R[2], None], TARGET, drop=lambda ttl, nth: ttl == 3 and nth == 0)
    base, rounds = first_base, []
    for _ in range(3):
        session = Session(params(Protocol.ICMP, retries=1, timeout_s=0.1), ident_base=base)
        sent_before = len(net.sent)
        run(session, net)
        rounds.append({struct.unpack_from("!H", p, 26)[0] for p in net.sent[sent_before:]})
        base = session.next_ident_base
    assert all(rounds) and 0 not in set().union(*rounds)
    assert not rounds[0] & rounds[1] and not rounds[1] & rounds[2]


def test_packet_budget_refusals_do_not_inflate_rtts() -> None:
    net = SimNetwork(R[:5], TARGET)
    session = Session(params(window=8))
    path = run(session, net, pps=10)
    assert path.reached
    assert [h.replies[0].rtt_s for h in path.hops] == [pytest.approx(0.01 * t) for t in range(1, 7)]
    assert path.duration_s >= 0.5  # six sends 100 ms apart


def test_next_probes_is_stable_until_sent_and_respects_the_window() -> None:
    session = Session(params(window=4))
    first = session.next_probes(0.0)
    assert [p.ttl for p in first] == [1, 2, 3, 4]
    assert session.next_probes(0.0) == first  # nothing sent: the same probes, the same identities
    session.sent(first[0], 0.0)
    session.sent(first[0], 0.1)  # reported twice: ignored
    again = session.next_probes(0.0)
    assert [p.ttl for p in again] == [2, 3, 4]
    for p in again:
        session.sent(p, 0.0)
    assert session.next_probes(0.0) == [] and not session.wants_to_send
    assert session.next_deadline() == pytest.approx(2.0)
    reply = parse(synth.icmp_error(first[2].data, R[2]))
    assert reply is not None and session.on_reply(reply, 0.03)
    # TTL 4, the deepest out, may be the destination: TTL 5 waits until it is overdue (1.5 x 30 ms).
    assert session.next_probes(0.03) == [] and session.next_deadline() == pytest.approx(0.045)
    assert [p.ttl for p in session.next_probes(0.045)] == [5]


def test_paris_invariants_hold_on_every_probe_sent() -> None:
    for protocol in Protocol:
        net = SimNetwork(R[:12], TARGET, drop=lambda ttl, nth: ttl % 3 == 0 and nth == 0)
        run(Session(params(protocol, max_hops=20, window=5, retries=2, timeout_s=0.5)), net)
        flows, idents = set(), set()
        for packet in net.sent:
            assert ones_sum(packet[:20]) == 0xFFFF  # valid IP header checksum
            if protocol is Protocol.UDP:
                flows.add(struct.unpack_from("!HHHH", packet, 20))  # ports, length, checksum
            elif protocol is Protocol.ICMP:
                flows.add(struct.unpack_from("!BBHH", packet, 20))  # type, code, checksum, identifier
            else:
                flows.add(struct.unpack_from("!HH", packet, 20))
            flows_ok = packet[9] == {Protocol.UDP: 17, Protocol.ICMP: 1, Protocol.TCP: 6}[protocol]
            assert flows_ok and packet[16:20] == socket.inet_aton(TARGET)
            idents.add(struct.unpack_from("!H", packet, 4)[0])
        assert len(flows) == 1, protocol
        assert len(idents) == len(net.sent) > 12  # every probe, retries included, has its own identity


def test_flows_differ_and_a_per_flow_balancer_gives_each_its_path() -> None:
    a, b = ["198.18.9.1", "198.18.9.2"], ["198.18.8.1", "198.18.8.2"]
    net = SimNetwork(lambda word: a if word % 2 else b, TARGET)
    paths = [run(Session(params(Protocol.TCP, flow_id=i)), net) for i in (0, 1)]
    assert [h.addresses[0] for h in paths[0].hops[:2]] == b
    assert [h.addresses[0] for h in paths[1].hops[:2]] == a
    assert paths[1].flow_id == 1


def test_reply_table_routes_replies_and_refuses_duplicate_flows() -> None:
    table = ReplyTable()
    one, two = Session(params(flow_id=1)), Session(params(flow_id=2))
    took: list[Session] = []

    def handler(session: Session) -> ReplyHandler:
        return lambda reply, rx, read_at: session.on_reply(reply, rx) and took.append(session)

    table.register(one.key, handler(one))
    table.register(two.key, handler(two))
    with pytest.raises(ValueError, match="another flow id"):
        table.register(Session(params(flow_id=2)).key, handler(two))
    probe = two.next_probes(0.0)[0]
    two.sent(probe, 0.0)
    packet = synth.icmp_error(probe.data, R[0])
    assert table.dispatch(packet, 0.01) and took == [two]
    assert table.dispatch(packet, 0.02) and two.stats.duplicates == 1
    table.unregister(two.key)
    assert not table.dispatch(packet, 0.03) and table.unmatched == 1 and len(table) == 1
    assert not table.dispatch(b"\x45" + bytes(40), 0.04) and table.unmatched == 2


def test_result_before_done_is_incomplete() -> None:
    session = Session(params())
    for p in session.next_probes(0.0):
        session.sent(p, 0.0)
    path = session.result()
    assert path.stop_reason == "incomplete" and not path.reached and len(path.hops) == 8


@pytest.mark.parametrize(
    "bad",
    [{"max_hops": 0}, {"timeout_s": 0}, {"retries": -1}, {"gap_limit": 0}, {"window": 0}, {"grace_s": -1}],
)
def test_invalid_params_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        params(Protocol.UDP, **bad)


def test_udp_and_tcp_need_a_source_address() -> None:
    with pytest.raises(ValueError, match="source address"):
        Session(TraceParams(TARGET, Protocol.UDP))
    assert Session(TraceParams(TARGET, Protocol.ICMP)).flow.src is None


def test_lookahead_bounds_probes_past_the_destination() -> None:
    wide = SimNetwork(R[:10], TARGET)
    run(Session(params(Protocol.TCP, max_hops=30, window=16)), wide)
    assert max(p[8] for p in wide.sent) > 16  # answers freed the window: 15 probes past TTL 11
    near = SimNetwork(R[:10], TARGET)
    path = run(Session(params(Protocol.TCP, max_hops=30, window=16, lookahead=5)), near)
    assert path.reached and len(path.hops) == 11
    assert max(p[8] for p in near.sent) <= 10 + 5 and len(near.sent) < len(wide.sent)


def test_lookahead_still_lets_the_gap_rule_fire() -> None:
    net = SimNetwork([R[0]] + [None] * 20, TARGET, dest_answers=False)
    path = run(Session(params(max_hops=20, gap_limit=3, lookahead=3, retries=0, timeout_s=1.0)), net)
    assert path.stop_reason == "gap" and len(path.hops) == 4 and max(p[8] for p in net.sent) == 4
    # A lookahead shorter than the gap: the silent stretch is probed on once everything out gave up.
    net = SimNetwork([R[0]] + [None] * 20, TARGET, dest_answers=False)
    path = run(Session(params(max_hops=20, gap_limit=4, lookahead=2, retries=0, timeout_s=1.0)), net)
    assert path.stop_reason == "gap" and len(path.hops) == 5 and path.duration_s == pytest.approx(2.015)
    with pytest.raises(ValueError, match="lookahead"):
        params(lookahead=0)


def test_reply_racing_its_own_timeout_is_kept() -> None:
    # The reply arrives exactly when the probe times out, before the driver ran on_timer.
    net = SimNetwork([R[0]], TARGET, dest_answers=False, delay={1: 1.0})
    session = Session(params(max_hops=1, gap_limit=1, retries=0, timeout_s=1.0, window=1))
    path = run(session, net)
    assert path.hops[0].addresses == (R[0],) and path.stop_reason == "max_hops"
    assert session.stats.late == 0


def test_a_rewritten_flow_checksum_is_counted_but_the_reply_kept() -> None:
    session = Session(params(Protocol.ICMP))
    probe = session.next_probes(0.0)[0]
    session.sent(probe, 0.0)
    quoted = bytearray(probe.data)
    quoted[22:24] = b"\x12\x34"  # a middlebox rewrote the ICMP checksum: the flow hash may differ
    reply = parse(synth.icmp_error(bytes(quoted), R[0]))
    assert reply is not None and session.on_reply(reply, 0.01)
    assert session.stats.checksum_mismatch == 1 and session.result().hops[0].addresses == (R[0],)
