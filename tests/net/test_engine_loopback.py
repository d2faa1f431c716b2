"""The socket layer against the real kernel, on loopback inside a private namespace (agent.net.netns)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from agent.model import Protocol, ReplyKind
from agent.net import call_in_netns, source_address
from agent.net.allowlist import Allowlist
from agent.net.budget import Budget
from agent.net.engine import ProbeEngine, open_engine
from agent.probers import PROBERS, ProbeSpec
from agent.probers.traceroute import probe as trace_probe

LOOP = "127.0.0.1"
LOOP_ONLY = Allowlist([f"{LOOP}/32"])


def _listener(ns: str) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOP, 8080))
        s.listen()
        return s

    return call_in_netns(ns, make)


def test_sockets_are_created_in_the_namespace(loopback_ns: str) -> None:
    before = os.readlink("/proc/thread-self/ns/net")

    # The namespace has only loopback: a route lookup toward a lab address fails there...
    def lookup() -> str:
        return source_address("198.19.176.10")

    with pytest.raises(OSError):
        call_in_netns(loopback_ns, lookup)
    # ... and the calling thread was never moved.
    assert os.readlink("/proc/thread-self/ns/net") == before
    assert call_in_netns(loopback_ns, lambda: os.readlink("/proc/thread-self/ns/net")) != before
    assert call_in_netns(loopback_ns, lambda: source_address(LOOP)) == LOOP


@pytest.mark.parametrize("name", ["icmp", "tcp"])
def test_latency_probers_measure_rtt_and_ttl(loopback_ns: str, name: str) -> None:
    listener = _listener(loopback_ns)

    async def main() -> list[float | None]:
        engine = open_engine(Budget(100), netns=loopback_ns, allow=LOOP_ONLY)
        async with engine:
            spec = ProbeSpec(LOOP, Protocol(name), port=8080, timeout_s=1.0)
            results = [await PROBERS[name](engine, spec) for _ in range(3)]
        assert all(getattr(r, "reply_ttl", None) == 64 for r in results)
        return [getattr(r, "rtt_s", None) for r in results]

    try:
        rtts = asyncio.run(main())
    finally:
        listener.close()
    assert all(r is not None and 0 < r < 0.01 for r in rtts), rtts


def test_closed_port_answers_with_rst(loopback_ns: str) -> None:
    async def main() -> dict[str, str]:
        async with open_engine(Budget(100), netns=loopback_ns, allow=LOOP_ONLY) as engine:
            result = await PROBERS["tcp"](engine, ProbeSpec(LOOP, Protocol.TCP, port=9, timeout_s=1.0))
        assert result.rtt_s is not None  # type: ignore[union-attr]
        return result.extra  # type: ignore[union-attr]

    assert asyncio.run(main()) == {"flags": "R"}


@pytest.mark.parametrize("protocol", list(Protocol))
def test_trace_over_loopback_reaches_in_one_hop(loopback_ns: str, protocol: Protocol) -> None:
    listener = _listener(loopback_ns)

    async def main() -> None:
        async with open_engine(Budget(100), netns=loopback_ns, allow=LOOP_ONLY) as engine:
            spec = ProbeSpec(LOOP, protocol, port=8080 if protocol is Protocol.TCP else None, timeout_s=1.0)
            (path,) = await trace_probe(engine, spec)
            assert path.reached and path.stop_reason == "reached"
            assert [h.addresses for h in path.hops] == [(LOOP,)]
            reply = path.hops[0].replies[0]
            assert reply.kind in (ReplyKind.ECHO_REPLY, ReplyKind.TCP_SYNACK, ReplyKind.UNREACHABLE)
            assert 0 < reply.rtt_s < 0.01
            assert engine.sent[protocol.value] >= 1

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_foreign_packets_are_counted_not_dispatched(loopback_ns: str) -> None:
    async def main() -> None:
        engine = ProbeEngine(call_in_netns(loopback_ns, _socket_set), Budget(10), netns=loopback_ns)
        async with engine:
            assert engine.dispatch(b"\x45" + bytes(40), 0.0) is False
            assert engine.unmatched == 1

    asyncio.run(main())


def _socket_set():  # type: ignore[no-untyped-def]
    from agent.net.sockets import open_socket_set

    return open_socket_set()


def test_without_cap_net_raw_the_error_names_the_capability() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    code = "from agent.cli import main; from agent.net import open_socket_set; open_socket_set()"
    proc = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "PrivilegeError" in proc.stderr and "CAP_NET_RAW" in proc.stderr
    assert "AmbientCapabilities=CAP_NET_RAW" in proc.stderr and "setcap cap_net_raw+ep" in proc.stderr


def test_errors_inside_the_namespace_pass_through_unchanged(loopback_ns: str) -> None:
    def fails() -> None:
        raise PermissionError(13, "not the namespace's fault")

    with pytest.raises(PermissionError, match="not the namespace's fault"):
        call_in_netns(loopback_ns, fails)


def test_unknown_namespace_is_a_usage_error() -> None:
    from agent.errors import UsageError

    with pytest.raises(UsageError, match="ip netns list"):
        call_in_netns("nkprobe-no-such-namespace", lambda: None)
