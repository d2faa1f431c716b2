"""Properties of the session over random scripted topologies (hypothesis): it always ends, within its
limits, and every recorded reply comes from the router the topology puts at that TTL, with its RTT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.lab.sim import SimNetwork, run
from agent.model import Protocol, ReplyKind
from agent.trace import Session, TraceParams

TARGET, SRC = "198.19.179.10", "198.18.0.2"


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[TraceParams, SimNetwork, set[tuple[int, int]]]:
    n = draw(st.integers(0, 14))
    routers = [draw(st.sampled_from([None, f"198.18.2.{ttl}"])) if ttl % 2 else f"198.18.2.{ttl}" for ttl in
               range(1, n + 1)]  # fmt: skip
    lost = draw(st.sets(st.tuples(st.integers(1, 20), st.integers(0, 2)), max_size=8))
    net = SimNetwork(
        routers,
        TARGET,
        dest_answers=draw(st.booleans()),
        delay=draw(st.dictionaries(st.integers(1, 20), st.floats(0.001, 3.0), max_size=5)),
        duplicate=draw(st.sets(st.integers(1, 20), max_size=3)),
        drop=lambda ttl, nth: (ttl, nth) in lost,
    )
    gap_limit = draw(st.integers(1, 5))
    params = TraceParams(
        TARGET,
        draw(st.sampled_from(list(Protocol))),
        src=SRC,
        max_hops=draw(st.integers(1, 20)),
        timeout_s=draw(st.floats(0.5, 2.0)),
        grace_s=draw(st.floats(0.0, 1.0)),
        retries=draw(st.integers(0, 2)),
        gap_limit=gap_limit,
        window=draw(st.integers(1, 16)),
        lookahead=draw(st.one_of(st.none(), st.integers(gap_limit, gap_limit + 4))),
    )
    return params, net, lost


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_session_ends_within_limits_and_attributes_correctly(
    scenario: tuple[TraceParams, SimNetwork, set[tuple[int, int]]],
) -> None:
    params, net, _ = scenario
    session = Session(params)
    path = run(session, net)
    assert session.done and path.stop_reason in {"reached", "unreachable", "gap", "max_hops"}
    assert [h.ttl for h in path.hops] == list(range(1, len(path.hops) + 1))
    assert len(path.hops) <= params.max_hops
    routers = list(net.path_for(0))
    for hop in path.hops:
        assert hop.probes_sent <= params.retries + 1
        assert len(hop.replies) <= hop.probes_sent
        expected = routers[hop.ttl - 1] if hop.ttl <= len(routers) else TARGET
        delay = net.delay.get(hop.ttl, net.rtt_per_hop_s * min(hop.ttl, len(routers) + 1))
        for reply in hop.replies:
            assert reply.address == expected
            assert reply.rtt_s == pytest.approx(delay)
    if path.reached:
        assert path.hops[-1].replies[-1].address == TARGET and len(path.hops) >= len(routers) + 1
        assert path.hops[-1].replies[-1].kind in {
            ReplyKind.UNREACHABLE,
            ReplyKind.ECHO_REPLY,
            ReplyKind.TCP_SYNACK,
        }
    if path.stop_reason == "gap":
        assert all(h.silent for h in path.hops[-params.gap_limit :])
        assert len(path.hops) >= params.gap_limit
    if path.stop_reason == "max_hops":
        assert len(path.hops) == params.max_hops
    assert session.stats.sent == len(net.sent)  # every probe sent was reported, none twice
    assert session.stats.sent <= params.max_hops * (params.retries + 1)
