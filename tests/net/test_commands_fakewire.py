"""`nkprobe ping` and `nkprobe trace` end to end over the real engine on a scripted wire (no sockets)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.commands import ping
from agent.config import Config
from agent.errors import UsageError
from agent.model import Protocol
from agent.probers import PROBERS, ProbeSpec
from agent.probers._latency import LATENCY_FLOWS
from tests.net.fakewire import Answer, FakeSend, fake_engine

DST = "198.19.176.10"
CONFIG = '[destination]\nasn = 131279\nprefixes = ["198.19.176.0/22"]\n'


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return str(path)


def use_fake_wire(
    monkeypatch: pytest.MonkeyPatch, answer: Callable[[bytes], list[Answer]], **engine_kwargs: Any
) -> list[FakeSend]:
    """Make the commands' `run_with_engine` run their body on a fake engine; the FakeSend it used."""
    used: list[FakeSend] = []

    def run_with_engine(config: Config, body: Callable[[Any], Awaitable[Any]]) -> Any:
        engine, send = fake_engine(answer, pps=10_000, **engine_kwargs)
        used.append(send)
        return asyncio.run(body(engine))

    monkeypatch.setattr("agent.commands._probing.run_with_engine", run_with_engine)
    return used


def ping_args(config: str, **kwargs: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ping.add_arguments(parser)
    args = parser.parse_args([DST, "--config", config])
    for k, v in kwargs.items():
        setattr(args, k, v)
    return args


def test_ping_with_more_probes_in_flight_than_flows(
    monkeypatch: pytest.MonkeyPatch, config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nobody answers, and all probes are due at once: more than the 256 latency flows would be in
    # flight if every probe started at once.
    count = len(LATENCY_FLOWS) + 44
    sends = use_fake_wire(monkeypatch, lambda packet: [])
    assert ping.run(ping_args(config_file, count=count, interval=0.0, timeout=0.05)) == 0
    out = capsys.readouterr().out
    assert f"{count} sent, 0 received, 100% loss" in out
    assert len(sends[0].sent) == count
    assert out.count("no answer") == count


def test_every_probe_answered_in_order(
    monkeypatch: pytest.MonkeyPatch, config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.packets import synth

    count = len(LATENCY_FLOWS) + 10
    use_fake_wire(monkeypatch, lambda packet: [(0.01, synth.echo_reply(packet), 0.0)])
    assert ping.run(ping_args(config_file, count=count, interval=0.0, timeout=1.0)) == 0
    out = capsys.readouterr().out
    assert f"{count} sent, {count} received, 0% loss" in out
    assert [ln.split()[0] for ln in out.splitlines() if ln.startswith("seq=")] == [
        f"seq={i}" for i in range(1, count + 1)
    ]


def test_flow_exhaustion_is_a_usage_error_not_a_traceback() -> None:
    async def main() -> None:
        engine, _ = fake_engine(lambda packet: [])
        spec = ProbeSpec(DST, Protocol.ICMP, timeout_s=0.05)
        await asyncio.gather(*(PROBERS["icmp"](engine, spec) for _ in range(len(LATENCY_FLOWS) + 1)))

    with pytest.raises(UsageError, match=r"latency probes in flight toward 198\.19\.176\.10"):
        asyncio.run(main())
