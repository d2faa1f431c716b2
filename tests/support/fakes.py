"""A scripted network for the scheduler: per-/24 upstreams that a test can flip, under one packet budget.

Fake the wire, not the library: the fakes send "packets" through the real
agent.net.budget.Budget exactly as agent.net.engine does (wait for a token, then spend it), on the event
loop's (virtual) clock, and record every send time so a test can check the cap.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agent.agent import Agent, load_tagger
from agent.classify import Tagger
from agent.config import AgentSection, Config, DestinationSection, PingSection, TraceSection
from agent.model import Border, Classification, Hop, Path, PingResult, Protocol, Reply, ReplyKind, Target
from agent.net.budget import Budget
from agent.results import Results
from agent.tracking import ConfirmedChange

# Each upstream: the hop address that betrays it, an RTT and the reply TTL its way back gives.
UPSTREAMS = {
    "china_unicom": ("10.0.1.1", 0.100, 55),
    "transtelecom": ("10.0.2.1", 0.180, 57),
}
HOPS_PER_TRACE = 6  # packets one flow's trace sends
# The scheduler tests' targets, one or two in each of the lab's /24s.
FLIP = Target("198.19.179.10")
TARGETS = (
    Target("198.19.176.10"),
    Target("198.19.177.10"),
    Target("198.19.178.10"),
    FLIP,
    Target("198.19.179.20"),
)


def config(max_pps: float = 20.0, targets: tuple[Target, ...] = TARGETS, **trace: Any) -> Config:
    """The scheduler tests' config: their targets, a ping a second, 4 flows a minute (`trace` overrides)."""
    return Config(
        agent=AgentSection(name="t", max_pps=max_pps),
        destination=DestinationSection(prefixes=("198.19.176.0/22",)),
        targets=targets,
        ping=PingSection(interval_s=1.0, protocols=("icmp", "tcp"), timeout_s=2.0),
        trace=replace(TraceSection(interval_s=60.0, flows=4), **trace),
    )


def classify(path: Path) -> Classification:
    for hop in path.hops:
        for upstream, (address, _, _) in UPSTREAMS.items():
            if address in hop.addresses:
                return Classification(upstream, Border(hop.ttl, address, None))
    return Classification("unknown")


class FixedTagger(Tagger):
    """The agent's tagger of a config (its AS tables and BGP check, loaded as the agent loads them, on
    every reload too) with a scripted rule instead of the tagging rule."""

    def __init__(self, config: Config, rule: Callable[[Path], Classification] = classify) -> None:
        loaded = load_tagger(config)
        super().__init__(loaded.table, loaded.settings, bgp=loaded.bgp, asn_files=loaded.asn_files)
        self.rule = rule

    def tag(self, path: Path, names: Mapping[str, str] = {}) -> Classification:
        return self.rule(path)


class NetAgent(Agent):
    """The real Agent (its round, probe, reload and history hand-off) over a FakeNet instead of the
    engine, with `history` standing in for the history writer's queue."""

    def __init__(
        self,
        config: Config,
        net: FakeNet,
        *,
        results: Results,
        rule: Callable[[Path], Classification] = classify,
        history: Callable[[ConfirmedChange], None] | None = None,
        wall: Callable[[], float],
    ) -> None:
        super().__init__(config, results=results, tagger_for=lambda c: FixedTagger(c, rule), wall=wall)
        self.net = net
        self.history = history
        self._pings: set[asyncio.Future[PingResult]] = set()

    def start_ping(self, target: Target, protocol: str, done: Callable[[PingResult], None]) -> None:
        """As the real Pinger: a failure to send raises here, the outcome comes later to `done`."""
        self.net.check_ping()
        task = asyncio.ensure_future(self.net.ping(target, protocol))
        self._pings.add(task)
        task.add_done_callback(self._pings.discard)
        task.add_done_callback(lambda t: None if t.cancelled() else done(t.result()))

    async def trace(self, target: Target, first_flow: int, flows: int) -> tuple[Path, ...]:
        return tuple(await self.net.trace(target, first_flow, flows))

    async def stop_pings(self) -> None:
        """Cancel the pings in flight (the real agent closes its Pinger so at its end)."""
        for task in list(self._pings):
            task.cancel()
        await asyncio.gather(*self._pings, return_exceptions=True)

    def record_change(self, change: ConfirmedChange) -> None:
        if self.history is not None:
            self.history(change)


@dataclass
class FakeNet:
    budget: Budget
    upstream: dict[str, str]  # /24 -> upstream name, or "split"
    results: Results | None = None
    silent: set[str] = field(default_factory=set)  # targets that stopped answering
    sends: list[float] = field(default_factory=list)
    ping_fail: int = 0  # the next N pings raise
    trace_fail: int = 0  # the next N rounds raise
    rounds: list[tuple[float, str]] = field(default_factory=list)  # (time, target)
    rng: random.Random = field(default_factory=lambda: random.Random(3))

    async def _send(self, protocol: str) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self.budget.wait(loop.time())) > 0:
            await asyncio.sleep(wait)
        self.budget.spend(loop.time())
        self.sends.append(loop.time())
        if self.results is not None:
            self.results.record_packets(protocol, 1)

    def _way(self, target: Target, flow: int) -> str:
        way = self.upstream[target.prefix]
        if way == "split":
            # A per-flow balancer: a fixed hash of the flow id, as a real L4 hash is. (Rounds whose flows
            # fall at random are tested on TagHysteresis alone, tests/tracking/test_hysteresis.py.)
            return "china_unicom" if (flow * 2654435761) % 7 < 4 else "transtelecom"
        return way

    def check_ping(self) -> None:
        if self.ping_fail:
            self.ping_fail -= 1
            raise OSError("fake send failure")

    async def ping(self, target: Target, protocol: str) -> PingResult:
        await self._send(protocol)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        if target.address in self.silent:
            await asyncio.sleep(2.0)
            return PingResult(target.address, Protocol(protocol), sent, None)
        _, rtt, ttl = UPSTREAMS[self._way(target, 0)]
        rtt += self.rng.uniform(0, 0.004)
        await asyncio.sleep(rtt)
        return PingResult(target.address, Protocol(protocol), sent, rtt, ttl)

    async def trace(self, target: Target, first_flow: int, flows: int) -> Sequence[Path]:
        loop = asyncio.get_running_loop()
        self.rounds.append((loop.time(), target.address))
        if self.trace_fail:
            self.trace_fail -= 1
            raise RuntimeError("fake trace failure")
        paths = []
        for flow in range(first_flow, first_flow + flows):
            started = loop.time()
            for _ in range(HOPS_PER_TRACE):
                await self._send("tcp")
            address, rtt, _ = UPSTREAMS[self._way(target, flow)]
            await asyncio.sleep(rtt)
            reached = target.address not in self.silent
            hops = (
                Hop(1, (Reply("192.168.1.1", 0.001, ReplyKind.TIME_EXCEEDED),), 1),
                Hop(2, (Reply(address, rtt - 0.01, ReplyKind.TIME_EXCEEDED),), 1),
                Hop(3, (), 2),
                Hop(4, (Reply(target.address, rtt, ReplyKind.TCP_SYNACK),) if reached else (), 2),
            )
            paths.append(
                Path(target.address, Protocol.TCP, flow, hops, reached, started, loop.time() - started)
            )
        return paths


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most sends within any half-open window of `window` seconds."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] + window <= t:  # the same arithmetic as agent.net.budget
            j += 1
        best = max(best, i - j + 1)
    return best
