"""The prober map is the dispatch: config and map agree, and each kind of probe has one result type."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from agent import probers
from agent.config import PING_PROTOCOLS, TRACE_PROTOCOLS
from agent.model import PingResult, Protocol
from agent.net.engine import ProbeEngine
from agent.probers import LATENCY_PROBERS, PROBERS, TRACE_PROBER, ProbeSpec, latency, trace

DST = "198.19.176.10"


def test_config_and_map_agree() -> None:
    assert set(PING_PROTOCOLS) == set(LATENCY_PROBERS) == set(PROBERS) - {TRACE_PROBER}
    assert {p.value for p in Protocol} >= set(TRACE_PROTOCOLS)  # every trace protocol is a Protocol
    for prober in PROBERS.values():
        assert list(inspect.signature(prober).parameters) == ["engine", "spec"]


def test_the_commands_reach_probers_only_through_the_map() -> None:
    """`nkprobe ping`, `nkprobe trace` and the agent import no prober module of their own."""
    import agent.agent
    import agent.commands.ping
    import agent.commands.trace

    for module in (agent.commands.ping, agent.commands.trace, agent.agent):
        source = inspect.getsource(module)
        for name in ("probers.ping", "probers.tcp", "probers.traceroute", "PROBERS["):
            assert name not in source, (module.__name__, name)
        assert "from agent.probers import" in source


def test_dispatch_refuses_a_protocol_without_a_latency_prober() -> None:
    engine = ProbeEngine.__new__(ProbeEngine)  # never used: refused before any prober runs
    with pytest.raises(ValueError, match="no latency prober for udp"):
        asyncio.run(latency(engine, ProbeSpec(DST, Protocol.UDP)))


def test_dispatch_checks_the_result_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """A map entry returning the other kind's result is our bug, said as such (not a probe outcome)."""

    async def wrong_kind(engine: ProbeEngine, spec: ProbeSpec) -> tuple[()]:
        return ()

    async def a_ping(engine: ProbeEngine, spec: ProbeSpec) -> PingResult:
        return PingResult(spec.target, spec.protocol, 0.0, None)

    monkeypatch.setitem(probers.PROBERS, "icmp", wrong_kind)
    monkeypatch.setitem(probers.PROBERS, TRACE_PROBER, a_ping)
    engine = ProbeEngine.__new__(ProbeEngine)
    with pytest.raises(TypeError, match="not PingResult"):
        asyncio.run(latency(engine, ProbeSpec(DST, Protocol.ICMP)))
    with pytest.raises(TypeError, match="not a tuple of paths"):
        asyncio.run(trace(engine, ProbeSpec(DST, Protocol.ICMP)))
