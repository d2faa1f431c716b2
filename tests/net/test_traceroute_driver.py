"""The traceroute driver (agent.probers.traceroute._Driver) over the real ProbeEngine on a scripted wire.

The driver runs from the engine's callbacks, not from a coroutine of its own: these tests pin down what
that must keep doing: wait for the budget, stop cleanly when cancelled, and hand errors to the caller.
"""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import NotAllowedError
from agent.lab import synth
from agent.model import Protocol
from agent.net.allowlist import Allowlist
from agent.packets.parse import parse
from agent.probers import ProbeSpec
from agent.probers.traceroute import probe as trace_probe
from tests.support.fakewire import Answer, fake_engine

DST = "198.19.176.10"
ROUTERS = ("198.18.1.1", "198.18.2.1", "198.18.3.1", "198.18.4.1", "198.18.5.1")


def five_routers_then_dst(packet: bytes) -> list[Answer]:
    """Routers at TTL 1-5, the destination at 6 and beyond; every answer 5 ms later."""
    ttl = packet[8]
    if ttl <= len(ROUTERS):
        return [(0.005, synth.icmp_error(packet, ROUTERS[ttl - 1]), 0.0)]
    return [(0.005, synth.echo_reply(packet), 0.0)]


def test_a_trace_waits_for_the_budget_and_never_sends_more_than_it_allows() -> None:
    async def main() -> None:
        engine, send = fake_engine(five_routers_then_dst, pps=4)
        times: list[float] = []
        real_sendto = send.sendto

        def timed_sendto(packet: bytes, address: tuple[str, int]) -> int:
            times.append(engine.now())
            return real_sendto(packet, address)

        send.sendto = timed_sendto  # type: ignore[method-assign]
        started = engine.now()
        (path,) = await trace_probe(engine, ProbeSpec(DST, Protocol.ICMP, timeout_s=3.0, max_hops=16))
        elapsed = engine.now() - started
        assert path.reached and path.stop_reason == "reached"
        assert [h.addresses for h in path.hops] == [(r,) for r in ROUTERS] + [(DST,)]
        # 4 tokens a second: TTLs 1-4 at once, 5-8 one second later, when the budget gave them back.
        assert 1.0 <= elapsed < 2.0
        assert all(sum(1 for u in times if t <= u < t + 1.0) <= 4 for t in times)
        assert len(times) == 8

    asyncio.run(main())


def test_a_cancelled_trace_sends_nothing_more_and_frees_its_flow() -> None:
    async def main() -> None:
        engine, send = fake_engine(lambda packet: [], pps=1000)  # nothing answers by itself
        spec = ProbeSpec(DST, Protocol.ICMP, timeout_s=0.05, retries=3, max_hops=32)
        task = asyncio.create_task(trace_probe(engine, spec))
        await asyncio.sleep(0)  # the task runs up to its first await: the first volley has left
        first_volley = len(send.sent)
        assert first_volley == 16 and len(engine.replies) == 1  # a window of TTLs in flight
        task.cancel()
        # A reply read in the same loop turn as the cancellation, before the task has unwound: it would
        # free a window slot, but a cancelled trace must not send again (nor touch its cancelled result).
        assert engine.dispatch(synth.icmp_error(send.sent[0][0], ROUTERS[0]), engine.now())
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(engine.replies) == 0  # the flow's key is free for the next round
        await asyncio.sleep(0.3)  # long past every timeout: a live timer would have sent the retries
        assert len(send.sent) == first_volley

    asyncio.run(main())


def test_a_session_that_finishes_from_a_reply_resolves_without_waiting_for_its_timer() -> None:
    async def main() -> float:
        engine, _ = fake_engine(five_routers_then_dst, pps=1000)
        started = engine.now()
        (path,) = await trace_probe(engine, ProbeSpec(DST, Protocol.ICMP, timeout_s=5.0, max_hops=8))
        assert path.reached
        return engine.now() - started

    assert asyncio.run(main()) < 0.5  # one round trip; the 5 s probe timeout never ran


def test_a_refused_destination_raises_in_the_caller_and_frees_the_flow() -> None:
    async def main() -> None:
        engine, send = fake_engine(five_routers_then_dst, allow=Allowlist(["198.19.177.0/24"]))
        with pytest.raises(NotAllowedError):
            await trace_probe(engine, ProbeSpec(DST, Protocol.ICMP))
        assert send.sent == [] and len(engine.replies) == 0

    asyncio.run(main())


def test_every_flow_of_a_multi_flow_trace_gets_its_own_path() -> None:
    async def main() -> None:
        engine, send = fake_engine(five_routers_then_dst, pps=1000)
        paths = await trace_probe(engine, ProbeSpec(DST, Protocol.ICMP, flows=3, max_hops=8))
        assert [p.flow_id for p in paths] == [0, 1, 2] and all(p.reached for p in paths)
        sports = {parsed.sport for parsed in (parse(synth.echo_reply(pkt)) for pkt, _ in send.sent) if parsed}
        assert len(sports) == 3  # three ICMP identifiers: three flows

    asyncio.run(main())
