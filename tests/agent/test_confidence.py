"""nkprobe_path_confidence: the classifier's confidence in each target's current tag, from round to scrape."""

from __future__ import annotations

import asyncio
import math
import random

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.exporter import build_registry
from agent.model import Border, Classification, Path, Target
from agent.net.budget import Budget
from agent.results import Results
from agent.scheduler import Scheduler
from agent.tracking import TagHysteresis, tag_values
from tests.support.fakes import FakeNet, NetAgent, classify, config
from tests.support.vloop import run_virtual

TAGS = tag_values(["china_unicom", "transtelecom"])
TARGET = Target("198.19.176.10")


def _confidence(state: Results) -> float:
    text = generate_latest(build_registry(state)).decode()
    values = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "nkprobe_path_confidence" and s.labels["target"] == TARGET.address
    ]
    assert len(values) == 1, values
    return values[0]


def _state() -> Results:
    return Results(
        agent_name="t",
        version="0",
        targets=(TARGET,),
        ping_protocols=("icmp",),
        trace_protocol="icmp",
        tags=TAGS,
    )


def test_the_gauge_is_nan_before_a_trace_then_the_number_of_the_round() -> None:
    state = _state()
    assert math.isnan(_confidence(state))
    ps = TagHysteresis(tags=TAGS)
    ps.observe(["china_unicom"], 1.0)
    for word, value in (("high", 1.0), ("low", 0.5), ("none", 0.0)):
        state.record_path(
            TARGET.address,
            tag=ps.tag,
            ratio=ps.ratio,
            changes=ps.changes,
            last_change_at=ps.last_change_at,
            hops=5,
            reached=True,
            border_rtt={},
            confidence=word,
        )
        assert _confidence(state) == value, word


def test_a_round_records_the_confidence_of_the_round_that_backs_the_tag() -> None:
    # Rounds classified high while the /24 goes through China Unicom; after a flip, the rounds that wait
    # for confirmation show another tag: the current one is then only weakly backed (low).
    cfg = config(max_pps=50, targets=(TARGET,), flows=1)
    state = _state()
    net = FakeNet(Budget(cfg.agent.max_pps), {"198.19.176.0/24": "china_unicom"})
    seen: list[tuple[str, str | None]] = []

    def high(path: Path) -> Classification:
        c = classify(path)
        return Classification(c.upstream, c.border or Border(1, "", None), confidence="high")

    async def script() -> None:
        agent = NetAgent(cfg, net, results=state, rule=high, wall=asyncio.get_running_loop().time)
        sched = Scheduler(
            cfg,
            results=state,
            probe=agent.probe,
            trace_round=agent.round,
            pending=agent.tracking.pending,
            rng=random.Random(1),
        )
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(30)
        t = state.target(TARGET.address)
        assert t is not None
        seen.append((t.tag, t.confidence))
        net.upstream["198.19.176.0/24"] = "transtelecom"
        while (t := state.target(TARGET.address)) is not None and t.tag == "china_unicom":
            seen.append((t.tag, t.confidence))
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(script())
    assert seen[0] == ("china_unicom", "high")
    assert ("china_unicom", "low") in seen[1:], seen  # the round that saw transtelecom first
    after = state.target(TARGET.address)
    assert after is not None and (after.tag, after.confidence) == ("transtelecom", "high")
