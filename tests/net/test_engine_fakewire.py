"""The probers over the real ProbeEngine on a scripted wire (tests/support/fakewire.py): no sockets."""

from __future__ import annotations

import asyncio

import pytest

from agent.lab import synth
from agent.model import Protocol
from agent.probers import PROBERS, ProbeSpec
from agent.probers.traceroute import probe as trace_probe
from tests.support.fakewire import Answer, fake_engine

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


def test_send_errors_reach_the_hook_and_a_rate_limited_warning(caplog: pytest.LogCaptureFixture) -> None:
    import errno
    import logging

    from agent.net import engine as engine_module

    kinds: list[str] = []
    clock = [100.0]
    engine, send = fake_engine(on_send_error=kinds.append, now=lambda: clock[0], pps=1e6)
    send.fail_with = OSError(errno.ENETUNREACH, "Network is unreachable")
    with caplog.at_level(logging.WARNING, logger="nkprobe.net"):
        for _ in range(5):
            assert engine.try_send(b"x" * 28, DST, "icmp") == clock[0]  # a lost probe has a send time
            clock[0] += 1.0
        clock[0] += engine_module.SEND_ERROR_LOG_INTERVAL_S
        engine.try_send(b"x" * 28, DST, "icmp")
    assert kinds == ["ENETUNREACH"] * 6
    assert engine.send_errors["ENETUNREACH"] == 6 and engine.sent["icmp"] == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # the first refusal, then one a minute later
    assert "ENETUNREACH" in warnings[0] and DST in warnings[0]
    assert "4 more refused" in warnings[1]


def test_with_an_allowlist_the_engine_refuses_any_other_destination() -> None:
    from agent.errors import NotAllowedError
    from agent.net.allowlist import Allowlist

    async def main() -> None:
        engine, send = fake_engine(allow=Allowlist(["198.19.176.0/22"]))
        assert engine.try_send(b"x" * 28, DST, "icmp") is not None
        assert await engine.send(b"x" * 28, "198.19.179.20", "tcp") >= 0
        for bad in ("198.19.180.1", "175.45.176.1", "127.0.0.1"):
            with pytest.raises(NotAllowedError, match="outside the configured destination prefixes"):
                engine.try_send(b"x" * 28, bad, "icmp")
            with pytest.raises(NotAllowedError):
                await engine.send(b"x" * 28, bad, "icmp")
        assert [dst for _, dst in send.sent] == [DST, "198.19.179.20"]
        assert engine.budget.in_flight(engine.now()) == 2  # refusals spend no token
        # Without an allowlist (loopback tests) the engine sends anywhere, as before.
        free, free_send = fake_engine()
        free.try_send(b"x" * 28, "127.0.0.1", "icmp")
        assert len(free_send.sent) == 1

    asyncio.run(main())


def test_the_commands_engine_carries_the_config_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.commands import _probing
    from agent.config import load_config
    from agent.net import engine as engine_module

    seen: dict[str, object] = {}

    def fake_open_engine(budget: object, **kwargs: object) -> object:
        seen.update(kwargs)
        raise RuntimeError("stop here")

    # run_with_engine imports open_engine when it runs (the engine is not on `config_and_target`'s path).
    monkeypatch.setattr(engine_module, "open_engine", fake_open_engine)
    with pytest.raises(RuntimeError, match="stop here"):
        _probing.run_with_engine(load_config(None), lambda engine: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
    allow = seen["allow"]
    assert allow is not None and allow.allows("175.45.176.71") and not allow.allows("198.19.176.10")  # type: ignore[attr-defined]


def test_a_late_reply_of_the_previous_round_is_not_credited_to_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two consecutive rounds of one flow (same session key). Round 1 ends as soon as the target answers
    # (no grace), leaving TTL 1 unanswered; its answer from R1 arrives during round 2, whose own TTL 1
    # answer (from R2) comes later. Even with the worst luck of the first draw, round 2's identities
    # follow round 1's, so R1's late answer matches nothing.
    from dataclasses import replace

    from agent.model import Path, ReplyKind

    monkeypatch.setattr("random.randrange", lambda *a: 0)
    r1, r2 = "198.18.1.1", "198.18.2.1"
    ttl1_seen: list[int] = []

    def answer(packet: bytes) -> list[Answer]:
        if packet[8] == 1:
            ttl1_seen.append(1)
            router, delay = (r1, 0.1) if len(ttl1_seen) == 1 else (r2, 0.2)
            return [(delay, synth.icmp_error(packet, router), 0.0)]
        return [(0.005, synth.echo_reply(packet), 0.0)]

    async def main() -> tuple[Path, Path]:
        engine, _ = fake_engine(answer)
        spec = ProbeSpec(DST, Protocol.ICMP, timeout_s=1.0, max_hops=2, grace_s=0.0)
        (first,) = await trace_probe(engine, spec)
        # Round 2 waits for its silent TTL 1 (the silent-hop floor at 0.5 s) long enough to hear R2.
        (second,) = await trace_probe(engine, replace(spec, grace_s=2.0, silent_min_s=0.5))
        return first, second

    first, second = asyncio.run(main())
    assert first.hops[0].silent and first.reached
    hop1 = second.hops[0]
    assert hop1.addresses == (r2,), hop1
    assert hop1.replies[0].kind is ReplyKind.TIME_EXCEEDED and hop1.replies[0].rtt_s > 0.15


def test_a_waiting_latency_probe_goes_before_trace_packets() -> None:
    """try_send (traces) refuses while a send (a latency probe) waits for a token, even once one is
    free, so a short budget does not starve the probes; with nobody waiting it sends again."""
    clock = [0.0]

    async def main() -> None:
        engine, wire = fake_engine(pps=1, now=lambda: clock[0])
        assert engine.try_send(b"trace-1", "198.18.1.1", "icmp") is not None  # the one token
        ping = asyncio.create_task(engine.send(b"ping", "198.18.1.1", "icmp"))
        await asyncio.sleep(0)  # the probe now waits (about 1 s of real time) for the next token
        clock[0] = 1.0  # the token is back, but the probe has not been woken yet
        assert engine.budget.wait(clock[0]) == 0.0
        assert engine.try_send(b"trace-2", "198.18.1.1", "icmp") is None
        ping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ping
        assert engine.try_send(b"trace-3", "198.18.1.1", "icmp") is not None
        assert [p for p, _ in wire.sent] == [b"trace-1", b"trace-3"]

    asyncio.run(main())
