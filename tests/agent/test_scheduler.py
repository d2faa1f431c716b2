"""The scheduler and the agent's rounds against a scripted network on virtual time: budget, triggers,
hysteresis, faults, reload."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Coroutine
from typing import Any

from agent.config import Config
from agent.model import Path, PingResult, Protocol, Target
from agent.net.budget import Budget
from agent.results import Results
from agent.scheduler import Scheduler
from agent.tracking import ConfirmedChange, round_figures, tag_values
from tests.support.fakes import FLIP, TARGETS, FakeNet, NetAgent, classify, config, max_in_window
from tests.support.vloop import run_virtual

CU, TTK = "china_unicom", "transtelecom"


class Rig:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.state = Results(
            agent_name="t",
            version="0",
            targets=cfg.targets,
            ping_protocols=cfg.ping.protocols,
            trace_protocol="tcp",
            tags=tag_values(cfg.upstreams),
        )
        self.net = FakeNet(
            Budget(cfg.agent.max_pps),
            {
                "198.19.176.0/24": CU,
                "198.19.177.0/24": TTK,
                "198.19.178.0/24": "split",
                "198.19.179.0/24": CU,
            },
            results=self.state,
        )
        self.changes: list[tuple[float, ConfirmedChange]] = []
        self.sched: Scheduler | None = None
        self.agent: NetAgent | None = None

    def history(self, change: ConfirmedChange) -> None:
        """What the agent submits to the history writer (its health: tests/history/test_history_fault.py)."""
        self.changes.append((asyncio.get_running_loop().time(), change))

    async def run(self, script: Callable[[Rig], Coroutine[Any, Any, None]]) -> None:
        loop = asyncio.get_running_loop()
        self.agent = NetAgent(self.cfg, self.net, results=self.state, history=self.history, wall=loop.time)
        self.sched = self.agent.scheduler = Scheduler(
            self.cfg,
            results=self.state,
            probe=self.agent.probe,
            trace_round=self.agent.round,
            pending=self.agent.tracking.pending,
            rng=random.Random(11),
        )
        task = asyncio.create_task(self.sched.run())
        try:
            await script(self)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.agent.stop_pings()

    def tag(self, address: str) -> str:
        t = self.state.target(address)
        assert t is not None
        return t.tag


def test_tags_settle_and_a_flip_is_one_change_seen_within_seconds() -> None:
    rig = Rig(config(max_pps=50))  # the lab's budget
    flip_at: list[float] = []

    async def script(r: Rig) -> None:
        await asyncio.sleep(30)  # first rounds come within 5 s, confirmations 1 s apart
        assert r.tag("198.19.176.10") == CU
        assert r.tag("198.19.177.10") == TTK
        assert r.tag(FLIP.address) == CU
        assert r.changes == []
        await asyncio.sleep(100)
        loop = asyncio.get_running_loop()
        flip_at.append(loop.time())
        r.net.upstream["198.19.179.0/24"] = TTK
        await asyncio.sleep(30)

    run_virtual(rig.run(script))
    assert rig.tag(FLIP.address) == TTK
    flip_targets = [c for _, c in rig.changes]
    assert sorted(c.target.address for c in flip_targets) == [FLIP.address, "198.19.179.20"]
    assert all((c.change.old, c.change.new) == (CU, TTK) for c in flip_targets)
    t = rig.state.target(FLIP.address)
    assert t is not None and t.changes == 1
    assert t.last_change_at is not None
    # Reply TTL and RTT change with the path: a trigger, a round, one confirming round: seconds.
    assert t.last_change_at - flip_at[0] < 10.0, t.last_change_at - flip_at[0]
    snap = rig.state.snapshot()
    assert snap.retrace_triggers["reply_ttl"] + snap.retrace_triggers["rtt_level"] >= 1
    assert t.ratio[TTK] == 1.0
    assert t.hops == 4 and t.reached is True
    assert t.border_rtt["upstream"] is not None


def test_global_budget_is_never_exceeded_and_traces_still_run() -> None:
    # 5 targets x 2 protocols at 1/s want 10 pps of pings alone; cap everything at 8 pps.
    rig = Rig(config(max_pps=8))

    async def script(r: Rig) -> None:
        await asyncio.sleep(300)

    run_virtual(rig.run(script))
    assert rig.net.sends, "nothing was sent"
    assert max_in_window(rig.net.sends) <= 8
    assert rig.sched is not None and rig.sched.rounds_done >= len(TARGETS) * 2
    assert all(rig.tag(t.address) != "unknown" for t in TARGETS)


def test_split_prefix_does_not_flap_and_shows_ratios() -> None:
    rig = Rig(config(targets=(Target("198.19.178.10"),)))
    ratios: set[float] = set()

    async def script(r: Rig) -> None:
        for _ in range(60):
            await asyncio.sleep(30)
            t = r.state.target("198.19.178.10")
            assert t is not None
            ratios.add(t.ratio[CU])

    run_virtual(rig.run(script))
    t = rig.state.target("198.19.178.10")
    assert t is not None
    assert t.changes == 0
    assert 0.0 < t.ratio[CU] < 1.0 and 0.0 < t.ratio[TTK] < 1.0
    assert t.tag in (CU, TTK)
    assert rig.changes == []
    assert len(ratios) == 1  # the same flows, the same split, round after round


def test_target_going_silent_triggers_a_trace_at_once() -> None:
    rig = Rig(config(targets=(Target("198.19.176.10"),)))

    async def script(r: Rig) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(40)
        before = len(r.net.rounds)
        r.net.silent.add("198.19.176.10")
        silent_at = loop.time()
        await asyncio.sleep(15)  # well before the next periodic round (60 s)
        later = [t for t, _ in r.net.rounds[before:]]
        assert later, "no trace after the target went silent"
        assert later[0] - silent_at < 10.0

    run_virtual(rig.run(script))
    assert rig.state.snapshot().retrace_triggers["unreachable"] >= 1
    t = rig.state.target("198.19.176.10")
    assert t is not None and t.up is False and t.reached is False


def test_failing_probes_and_traces_are_counted_never_fatal() -> None:
    rig = Rig(config(targets=(Target("198.19.176.10"),)))
    rig.net.ping_fail = 5
    rig.net.trace_fail = 2

    async def script(r: Rig) -> None:
        await asyncio.sleep(200)

    faults: list[bool] = []

    async def watch(r: Rig) -> None:
        for _ in range(200):
            faults.append(r.state.snapshot().faults["probing"])
            await asyncio.sleep(1)

    async def both(r: Rig) -> None:
        await asyncio.gather(script(r), watch(r))

    run_virtual(rig.run(both))
    assert True in faults and faults[-1] is False  # a run of failures is a fault, and it clears
    snap = rig.state.snapshot()
    assert snap.errors["ping"] == 5
    assert snap.errors["trace"] == 2
    t = snap.targets[0]
    assert t.traceroutes["error"] == 2 * 4
    assert t.traceroutes["reached"] > 0
    assert t.probes_answered["icmp"] > 100  # the loops went on
    assert t.tag == CU


def test_reconfigure_keeps_path_state_of_kept_targets() -> None:
    rig = Rig(config(targets=(FLIP,)))

    async def script(r: Rig) -> None:
        await asyncio.sleep(30)
        assert r.tag(FLIP.address) == CU
        assert r.agent is not None
        new = config(targets=(FLIP, Target("198.19.177.10")))
        assert await r.agent.reload(new)  # state, rounds and scheduler, as SIGHUP does
        assert r.tag(FLIP.address) == CU  # not back to unknown
        await asyncio.sleep(30)
        assert r.tag("198.19.177.10") == TTK

    run_virtual(rig.run(script))
    assert rig.changes == []


def test_round_figures_of_an_unreached_path() -> None:
    path = Path("198.19.176.10", Protocol.TCP, 0, (), False, 0.0, 1.0)
    f = round_figures(path, classify(path))
    assert (f.hops, f.reached, f.border_upstream) == (None, False, None)


def test_a_quick_flip_back_is_seen_as_fast_as_the_flip() -> None:
    rig = Rig(config(max_pps=50, targets=(FLIP,)))
    seen: list[float] = []

    async def script(r: Rig) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(30)
        for upstream in (TTK, CU):
            r.net.upstream["198.19.179.0/24"] = upstream
            flipped = loop.time()
            while r.tag(FLIP.address) != upstream:
                await asyncio.sleep(0.1)
            seen.append(loop.time() - flipped)
            await asyncio.sleep(12)  # well within the latency watch's memory of the old level

    run_virtual(rig.run(script))
    assert len(seen) == 2 and max(seen) < 10.0, seen
    assert [(c.change.old, c.change.new) for _, c in rig.changes] == [(CU, TTK), (TTK, CU)]


def test_urgent_rounds_jump_the_queue() -> None:
    from agent.scheduler import _Slots

    order: list[str] = []

    async def main() -> None:
        slots = _Slots(1)
        await slots.acquire(False)  # busy

        async def wait(name: str, urgent: bool) -> None:
            await slots.acquire(urgent)
            order.append(name)
            slots.release()

        tasks = [asyncio.create_task(wait(n, n.startswith("u"))) for n in ("p1", "p2", "u1", "p3", "u2")]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)

    run_virtual(main())
    assert order == ["u1", "u2", "p1", "p2", "p3"]


def test_a_failed_round_while_a_tag_awaits_confirmation_is_retried_as_soon() -> None:
    # The scheduler alone, with scripted rounds: the first leaves a change pending, the second fails.
    # A failed round changed nothing, so the change still awaits confirmation: the next round follows
    # after the confirm delay, not a whole trace interval (60 s here).
    cfg = config(targets=(FLIP,))
    state = Rig(cfg).state
    script = iter([True, None])  # None: raise
    rounds: list[float] = []
    pending = [False]

    async def trace_round(target: Target) -> None:
        rounds.append(asyncio.get_running_loop().time())
        step = next(script, False)
        if step is None:
            raise OSError("fake trace failure")
        pending[0] = step

    async def probe(target: Target, protocol: str) -> None:
        return None

    async def main() -> None:
        sched = Scheduler(
            cfg,
            results=state,
            probe=probe,
            trace_round=trace_round,
            pending=lambda _target: pending[0],
            rng=random.Random(2),
        )
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(20)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(main())
    assert len(rounds) == 3, rounds
    assert rounds[1] - rounds[0] < 3.0 and rounds[2] - rounds[1] < 3.0, rounds
    assert state.snapshot().errors["trace"] == 1


def test_latency_probes_go_in_one_volley_an_interval_apart() -> None:
    """Every target and protocol is probed at one wake-up an interval (+-10 %) apart (issue 25)."""
    rig = Rig(config(max_pps=100))
    starts: list[tuple[float, str, str]] = []

    async def script(r: Rig) -> None:
        assert r.agent is not None
        start_ping = r.agent.start_ping

        def recorded(target: Target, protocol: str, done: Callable[[PingResult], None]) -> None:
            starts.append((asyncio.get_running_loop().time(), target.address, protocol))
            start_ping(target, protocol, done)

        r.agent.start_ping = recorded  # type: ignore[method-assign]
        await asyncio.sleep(30)

    run_virtual(rig.run(script))
    volleys: dict[float, list[tuple[str, str]]] = {}
    for at, address, protocol in starts:
        volleys.setdefault(at, []).append((address, protocol))
    series = {(t.address, p) for t in TARGETS for p in rig.cfg.ping.protocols}
    assert len(volleys) >= 25
    assert all(sorted(v) == sorted(series) for v in volleys.values()), volleys
    times = sorted(volleys)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    interval = rig.cfg.ping.interval_s
    assert all(0.9 * interval - 1e-9 <= g <= 1.1 * interval + 1e-9 for g in gaps), gaps
    assert len({round(g, 6) for g in gaps}) > 1  # jittered, not a fixed beat


def test_trace_enabled_false_probes_latency_only() -> None:
    rig = Rig(config(enabled=False))

    async def script(r: Rig) -> None:
        await asyncio.sleep(120)
        r.net.upstream["198.19.179.0/24"] = TTK  # a trigger now only counts
        await asyncio.sleep(30)

    run_virtual(rig.run(script))
    assert rig.net.rounds == []
    assert rig.sched is not None and rig.sched.rounds_done == 0
    snap = rig.state.snapshot()
    assert sum(snap.retrace_triggers.values()) >= 1
    assert len(rig.net.sends) >= 100  # the pings went on
