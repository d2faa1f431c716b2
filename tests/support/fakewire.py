"""A scripted wire under the real ProbeEngine: no sockets, no kernel, replies scheduled on the event loop.

`FakeSockets` stands in for agent.net.sockets.SocketSet; its send socket hands every packet to `answer`,
which returns (delay, reply bytes, receive stamp offset) tuples; each reply is dispatched through the
engine's production path (`ProbeEngine.dispatch`) `delay` seconds later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from agent.net.budget import Budget
from agent.net.engine import ProbeEngine
from agent.net.sockets import SocketSet

# (delay before the reply is read, reply bytes, kernel stamp relative to the read time)
Answer = tuple[float, bytes, float]


@dataclass
class FakeSend:
    answer: Callable[[bytes], list[Answer]] = lambda packet: []
    sent: list[tuple[bytes, str]] = field(default_factory=list)
    fail_with: OSError | None = None
    engine: ProbeEngine | None = None

    def sendto(self, packet: bytes, address: tuple[str, int]) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((packet, address[0]))
        loop = asyncio.get_running_loop()
        for delay, reply, stamp_offset in self.answer(packet):
            loop.call_later(delay, self._deliver, reply, stamp_offset)
        return len(packet)

    def _deliver(self, reply: bytes, stamp_offset: float) -> None:
        assert self.engine is not None
        read_at = self.engine.now()
        self.engine.dispatch(reply, read_at + stamp_offset, read_at)

    def close(self) -> None:
        pass


class _NoSocket:
    def close(self) -> None:
        pass


def fake_engine(
    answer: Callable[[bytes], list[Answer]] = lambda packet: [], *, pps: float = 1000.0, **kwargs: Any
) -> tuple[ProbeEngine, FakeSend]:
    """A ProbeEngine whose sends go to `answer`; do not `start()` it (there is nothing to read)."""
    send = FakeSend(answer)
    sockets = cast(SocketSet, FakeSocketSet(send))
    engine = ProbeEngine(sockets, Budget(pps), **kwargs)
    send.engine = engine
    engine.source_for = lambda dst: "198.18.0.2"  # type: ignore[method-assign]
    return engine, send


@dataclass
class FakeSocketSet:
    send: FakeSend
    icmp: _NoSocket = field(default_factory=_NoSocket)
    tcp: _NoSocket = field(default_factory=_NoSocket)
    stamped: bool = True  # replies come with their receive time (FakeSend._deliver)

    def close(self) -> None:
        pass

    def receivers(self) -> tuple[Any, ...]:
        return ()
