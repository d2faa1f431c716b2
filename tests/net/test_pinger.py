"""The Pinger (agent.probers._latency): the agent's latency probes without a task each, read lazily.

Against the real kernel on loopback in a private namespace (127.0.0.0/8 answers there) for what the
sockets do, and on the scripted wire (tests/support/fakewire.py) for the timing rules."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from agent.lab import synth
from agent.model import PingResult, Protocol
from agent.net.allowlist import Allowlist
from agent.net.budget import Budget
from agent.net.engine import open_engine
from agent.packets.parse import parse
from agent.probers import Pinger
from tests.support.fakewire import fake_engine

LOOPBACK = Allowlist(["127.0.0.0/8"])
TARGETS = [f"127.0.0.{i}" for i in range(2, 10)]


async def until(done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait on the running loop until `done()`, at most `timeout` seconds (then fail)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, f"not done within {timeout} s"
        await asyncio.sleep(0.01)


def test_a_lazy_volley_is_read_at_one_look_with_kernel_stamped_rtts(loopback_ns: str) -> None:
    async def main() -> tuple[list[list[PingResult]], list[int], bool]:
        engine = open_engine(Budget(1000), netns=loopback_ns, allow=LOOPBACK)
        polls = [0]
        real_poll = engine.poll

        def counted_poll() -> None:
            polls[0] += 1
            real_poll()

        engine.poll = counted_poll  # type: ignore[method-assign]
        volleys: list[list[PingResult]] = []
        looks: list[int] = []
        reading = False
        async with engine:
            pinger = Pinger(engine, lazy=True)
            for _ in range(3):
                before = polls[0]
                results: list[PingResult] = []
                for address in TARGETS:
                    for protocol, port in ((Protocol.ICMP, None), (Protocol.TCP, 9)):
                        pinger.start(address, protocol, port, 0.5, results.append)
                reading = reading or engine._reading
                await until(lambda r=results: len(r) == 2 * len(TARGETS) or engine._reading)
                reading = reading or engine._reading
                volleys.append(results)
                looks.append(polls[0] - before)
            pinger.close()
        return volleys, looks, reading

    volleys, looks, reading = asyncio.run(main())
    assert not reading, "a lazy pinger put the sockets on the event loop"
    for results in volleys:
        # Loopback answers come in microseconds; the kernel may stamp one before our send's clock read
        # (agent.net.clock.STAMP_EARLY_S): an RTT of 0, never the time it waited to be read.
        assert all(r.rtt_s is not None and 0 <= r.rtt_s < 0.01 for r in results), results
        assert Counter(r.protocol for r in results) == {Protocol.ICMP: 8, Protocol.TCP: 8}
    # The first volley has no RTT to go by and is read at its timeout, in one look; then the answers are
    # expected a last RTT and a half on: every later volley of 16 probes is read at one wake-up too.
    assert looks == [1, 1, 1], looks


def test_every_probe_of_a_target_and_protocol_keeps_one_flow_and_a_new_identity() -> None:
    async def main() -> list[bytes]:
        engine, wire = fake_engine(lambda packet: [(0.001, synth.echo_reply(packet), 0.0)])
        pinger = Pinger(engine, lazy=False)
        results: list[PingResult] = []
        for n in range(1, 6):
            pinger.start("198.19.176.10", Protocol.ICMP, None, 1.0, results.append)
            await until(lambda n=n: len(results) == n)
        assert [r.rtt_s is not None for r in results] == [True] * 5
        return [packet for packet, _ in wire.sent]

    packets = asyncio.run(main())
    flows = {(p[24:26]) for p in packets}  # the ICMP echo identifier: the flow
    idents = [int.from_bytes(p[26:28], "big") for p in packets]  # the sequence number: the identity
    assert len(flows) == 1
    assert len(set(idents)) == 5 and all(0 < i <= 0xFFFF for i in idents)
    assert all(parse(synth.echo_reply(p)) is not None for p in packets)


def test_an_answer_read_late_counts_only_if_it_came_in_before_the_timeout() -> None:
    """Lazy reads read late, but the kernel's stamp says when an answer came: one stamped after the
    timeout is a loss, as it would have been had it been read at once."""

    def answer(packet: bytes) -> list[tuple[float, bytes, float]]:
        late = packet[19] % 2  # every other target (the last byte of the destination): stamped 0.3 s late
        return [(0.05, synth.echo_reply(packet), 0.3 if late else 0.0)]

    async def main() -> list[PingResult]:
        engine, _ = fake_engine(answer)
        pinger = Pinger(engine, lazy=True)
        results: list[PingResult] = []
        for i in range(4):
            pinger.start(f"198.19.176.{10 + i}", Protocol.ICMP, None, 0.2, results.append)
        await until(lambda: len(results) == 4)
        return results

    results = asyncio.run(main())
    assert len(results) == 4
    answered = [r for r in results if r.rtt_s is not None]
    lost = [r for r in results if r.rtt_s is None]
    assert len(answered) == 2 and len(lost) == 2, results
    assert all(0.04 < (r.rtt_s or 0) < 0.2 for r in answered)


def test_probes_past_the_budget_wait_in_order_and_go_before_trace_packets() -> None:
    async def main() -> tuple[list[str], bool | None]:
        engine, wire = fake_engine(lambda packet: [(0.001, synth.echo_reply(packet), 0.0)], pps=2)
        pinger = Pinger(engine, lazy=True)
        results: list[PingResult] = []
        for i in range(4):
            pinger.start(f"198.19.176.{10 + i}", Protocol.ICMP, None, 2.0, results.append)
        # Two went at once; the other two wait for tokens, and a trace packet may not take one first.
        trace_refused = engine.try_send(b"trace", "198.19.176.10", "icmp") is None
        await until(lambda: len(results) == 4)
        return [dst for _, dst in wire.sent], trace_refused and len(results) == 4

    sent, ok = asyncio.run(main())
    assert sent == [f"198.19.176.{10 + i}" for i in range(4)]
    assert ok


def test_a_target_outside_the_allowlist_raises_and_sends_nothing() -> None:
    async def main() -> int:
        engine, wire = fake_engine(allow=Allowlist(["198.19.176.0/22"]))
        pinger = Pinger(engine, lazy=True)
        try:
            pinger.start("192.0.2.1", Protocol.ICMP, None, 1.0, lambda r: None)
        except Exception as exc:
            assert "192.0.2.1" in str(exc)
        else:
            raise AssertionError("no error for a target outside the allowlist")
        assert not engine.replies._handlers  # its flow is not left registered
        return len(wire.sent)

    assert asyncio.run(main()) == 0
