"""A routing change seen in BGP re-traces its /24 at once: the Agent's live view (pointed at local RIS
Live and RIPEstat servers, tests/support/ristest.py) wakes the real Scheduler's trace loops of that /24's
targets (trigger reason `bgp`), and the change is in /metrics. Over 20 replayed changes, the time from
the replayed message to the trace starting and to the metric showing it stays under 1 s (issue 26)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from prometheus_client import generate_latest

from agent.agent import Agent
from agent.config import loads_config
from agent.exporter import build_registry
from agent.model import Target
from agent.scheduler import Scheduler
from tests.support.ristest import CU, DEST_ASN, PEERS, SLASH24S, TTK, RipestatServer, RisLiveServer, update

P176, P179 = SLASH24S[0], SLASH24S[3]
CHANGES = 20


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def _share(text: str, prefix: str, upstream: str) -> float | None:
    key = f'nkprobe_bgp_upstream_ratio{{prefix="{prefix}",upstream="{upstream}"}} '
    for line in text.splitlines():
        if line.startswith(key):
            return float(line[len(key) :])
    return None


def test_twenty_bgp_changes_each_retrace_their_slash24_and_reach_the_metric_within_a_second() -> None:
    with RisLiveServer() as ris, RipestatServer() as stat:
        config = loads_config(
            "[[targets]]\naddress = '175.45.179.10'\n[[targets]]\naddress = '175.45.179.20'\n"
            "[[targets]]\naddress = '175.45.176.10'\n"
            "[ping]\ninterval_s = 60.0\n[trace]\ninterval_s = 3600.0\n"
            f"[bgp]\nris_live_url = '{ris.url}'\nripestat_url = '{stat.url}'\n"
        )
        agent = Agent(config)
        registry = build_registry(agent.results, live=agent.live_status)
        traced: list[tuple[str, float]] = []

        async def trace_round(target: Target) -> None:
            traced.append((target.address, time.monotonic()))

        async def probe(target: Target, protocol: str) -> None:
            return None

        to_trace, to_metric = [], []

        async def main() -> None:
            scheduler = Scheduler(
                config, results=agent.results, probe=probe, trace_round=trace_round, pending=lambda t: False,
                rng=NoJitter(), min_round_gap_s=0.0,
            )  # fmt: skip
            agent.scheduler = scheduler
            run = asyncio.create_task(scheduler.run())
            agent._start_bgp()
            feed = agent.bgp_feed
            assert feed is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not (feed.status().stream_up and not feed.status().stale and len(traced) >= 3):
                assert loop.time() < deadline, "the live view never came up"
                await asyncio.sleep(0.01)
            for i in range(CHANGES):
                via_ttk = i % 2 == 0
                message = update(PEERS[0], (3333, TTK if via_ttk else CU, DEST_ASN), announce=[P179], at=i)
                before = len(traced)
                sent = await asyncio.to_thread(ris.send, message)
                want = 1 / 3 if via_ttk else 0.0
                trace_at = metric_at = None
                deadline = loop.time() + 5
                while trace_at is None or metric_at is None:
                    assert loop.time() < deadline, f"change {i}: no trace or no metric within 5 s"
                    new = [at for addr, at in traced[before:] if addr.startswith("175.45.179.")]
                    if trace_at is None and len(new) == 2:
                        trace_at = min(new)
                    share = _share(generate_latest(registry).decode(), P179, "transtelecom")
                    if metric_at is None and share is not None and abs(share - want) < 1e-9:
                        metric_at = time.monotonic()
                    await asyncio.sleep(0.002)
                to_trace.append(trace_at - sent)
                to_metric.append(metric_at - sent)
            assert not any(addr == "175.45.176.10" for addr, _ in traced[3:])  # only the /24 that moved
            assert agent.results.snapshot().retrace_triggers["bgp"] == CHANGES
            await agent._stop_bgp()
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

        asyncio.run(main())
    for name, times in (("trace start", to_trace), ("metric", to_metric)):
        median, worst = statistics.median(times) * 1000, max(times) * 1000
        print(f"\nreplay -> {name} over {CHANGES} changes: median {median:.1f} ms, max {worst:.1f} ms")
    assert max(to_trace) < 1.0 and max(to_metric) < 1.0
