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
from tests.support.fakewire import Answer, FakeSend, fake_engine

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
    from agent.lab import synth

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


ROUTER = "198.18.1.1"


def two_hops(packet: bytes) -> list[Answer]:
    from agent.lab import synth

    if packet[8] == 1:
        return [(0.002, synth.icmp_error(packet, ROUTER), 0.0)]
    return [(0.004, synth.echo_reply(packet), 0.0)]


def trace_args(config: str, *extra: str) -> argparse.Namespace:
    from agent.commands import trace

    parser = argparse.ArgumentParser()
    trace.add_arguments(parser)
    return parser.parse_args([DST, "--config", config, "--protocol", "icmp", "--max-hops", "4", *extra])


def answering_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up check finds a resolver that answers (tests/conftest.py gives every test none)."""
    monkeypatch.setattr("agent.classify.rdns.gethostbyaddr", lambda a: ("vp.example.net", [], [a]))


def names_config(tmp_path: Path, names: str) -> str:
    path = tmp_path / "names.toml"
    path.write_text(CONFIG + "[names]\n" + names)
    return str(path)


def test_trace_honours_names_reverse_dns_false(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.commands import trace

    asked: list[str] = []
    monkeypatch.setattr("agent.classify.rdns.system_resolver", lambda a: asked.append(a) or "r1.example.net")
    answering_resolver(monkeypatch)
    use_fake_wire(monkeypatch, two_hops)
    assert trace.run(trace_args(names_config(tmp_path, "reverse_dns = false\n"))) == 0
    assert asked == [] and "r1.example.net" not in capsys.readouterr().out
    # The default (reverse_dns = true) looks names up, with the system resolver of agent.classify.rdns.
    assert trace.run(trace_args(names_config(tmp_path, "timeout_s = 2\n"))) == 0
    assert sorted(asked) == [ROUTER, DST] and f"{ROUTER} (r1.example.net)" in capsys.readouterr().out
    # --no-dns still wins over the config.
    asked.clear()
    assert trace.run(trace_args(names_config(tmp_path, "reverse_dns = true\n"), "--no-dns")) == 0
    assert asked == []


def test_a_hung_resolver_delays_the_trace_by_names_timeout_at_most(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading
    import time

    from agent.commands import trace

    release = threading.Event()

    def hung(address: str) -> str | None:
        release.wait(30)
        return "too-late.example.net"

    monkeypatch.setattr("agent.classify.rdns.system_resolver", hung)
    answering_resolver(monkeypatch)
    use_fake_wire(monkeypatch, two_hops)
    try:
        started = time.monotonic()
        assert trace.run(trace_args(names_config(tmp_path, "timeout_s = 0.3\n"))) == 0
        took = time.monotonic() - started
    finally:
        release.set()
    out = capsys.readouterr().out
    assert "destination reached" in out and "too-late" not in out
    assert 0.3 <= took < 1.0, took  # the configured timeout, not the old hard-coded 1 s


def test_a_hung_resolver_does_not_hold_the_process_exit() -> None:
    import subprocess
    import sys
    import time

    code = (
        "import asyncio, threading\n"
        "from agent.classify import rdns\n"
        "from agent.commands import trace\n"
        "rdns.system_resolver = lambda a: threading.Event().wait(60)\n"
        "print(asyncio.run(trace.reverse_names({'198.18.1.1', '198.18.1.2'}, 0.2)))\n"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "{}" and proc.stderr == ""
    assert time.monotonic() - started < 5  # an interpreter start and 0.2 s, not the resolver's 60 s


def test_the_tagging_side_loads_once_the_first_probes_are_out(
    monkeypatch: pytest.MonkeyPatch, config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its imports would hold the GIL in front of the first probes (issue 25, bench/startup.py).
    from agent.commands import trace

    sends = use_fake_wire(monkeypatch, two_hops)
    sent_before: list[int] = []
    load = trace._load_tagger

    def counting_load(*args: Any) -> Any:
        sent_before.append(len(sends[0].sent))
        return load(*args)

    monkeypatch.setattr(trace, "_load_tagger", counting_load)
    assert trace.run(trace_args(config_file, "--no-dns")) == 0
    assert "destination reached" in capsys.readouterr().out
    assert len(sent_before) == 1 and sent_before[0] >= 1
