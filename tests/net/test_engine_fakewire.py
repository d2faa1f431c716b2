"""The probers over the real ProbeEngine on a scripted wire (tests/net/fakewire.py): no sockets."""

from __future__ import annotations

import asyncio

from agent.model import Protocol
from agent.packets import synth
from agent.probers import PROBERS, ProbeSpec
from agent.probers.traceroute import probe as trace_probe
from tests.net.fakewire import Answer, fake_engine

DST = "198.19.176.10"


def echo_after(delay: float, stamp_offset: float = 0.0) -> object:
    def answer(packet: bytes) -> list[Answer]:
        return [(delay, synth.echo_reply(packet), stamp_offset)]

    return answer


def test_a_kernel_stamp_before_the_send_is_replaced_by_the_read_time() -> None:
    # A wall-clock step forward between arrival and read maps the stamp a second before the send: the
    # RTT is then the read time's, never 0 (nor negative).
    async def main() -> tuple[float | None, float | None]:
        engine, _ = fake_engine(echo_after(0.02, stamp_offset=-1.0))  # type: ignore[arg-type]
        good, _ = fake_engine(echo_after(0.02, stamp_offset=-0.005))  # type: ignore[arg-type]
        spec = ProbeSpec(DST, Protocol.ICMP, timeout_s=1.0)
        stepped = await PROBERS["icmp"](engine, spec)
        normal = await PROBERS["icmp"](good, spec)
        return stepped.rtt_s, normal.rtt_s  # type: ignore[union-attr]

    stepped, normal = asyncio.run(main())
    assert stepped is not None and 0.015 < stepped < 0.2
    assert normal is not None and 0.01 < normal < 0.2 and normal < stepped  # a sane stamp is used as is


def test_trace_rtts_survive_a_clock_step() -> None:
    async def main() -> float:
        engine, _ = fake_engine(echo_after(0.02, stamp_offset=-1.0))  # type: ignore[arg-type]
        (path,) = await trace_probe(engine, ProbeSpec(DST, Protocol.ICMP, timeout_s=1.0, max_hops=4))
        assert path.reached
        return path.hops[0].replies[0].rtt_s

    assert 0.015 < asyncio.run(main()) < 0.2
