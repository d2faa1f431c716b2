"""agent.vantage stepped by numbers: each verdict from route, link, answers and first hops; and the
exporter's two series (nkprobe_vantage_healthy, nkprobe_vantage_reason with every reason present)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from agent.exporter.vantage import VantageCollector
from agent.model import Hop, Path, Protocol, Reply, ReplyKind
from agent.vantage import REASONS, VantageHealth, Verdict, deepest_answer

TARGET = "198.19.176.10"


def trace(answering: tuple[int, ...], reached: bool = False, max_ttl: int = 8) -> Path:
    """A trace whose TTLs in `answering` got a reply (the others silent)."""
    hops = tuple(
        Hop(ttl, (Reply(f"198.18.{ttl}.1", 0.001, ReplyKind.TIME_EXCEEDED),) if ttl in answering else (), 1)
        for ttl in range(1, max_ttl + 1)
    )
    return Path(TARGET, Protocol.TCP, 0, hops, reached, 0.0, 0.1)


def health() -> VantageHealth:
    return VantageHealth(answer_window_s=10.0, trace_window_s=150.0)


def test_deepest_answer_is_the_highest_ttl_that_answered() -> None:
    assert deepest_answer(trace(())) == 0
    assert deepest_answer(trace((1, 2, 5))) == 5


def test_no_route_and_link_down_come_from_the_watcher_and_clear_with_it() -> None:
    v = health()
    v.answered(0.0)
    v.egress(route=False, link_up=False)
    assert v.verdict(1.0) == Verdict(False, "no_route")  # even with a fresh answer: the route is gone
    v.egress(route=True, link_up=False)
    assert v.verdict(2.0) == Verdict(False, "link_down")
    v.egress(route=True, link_up=True)
    assert v.verdict(3.0) == Verdict(True, "ok")


def test_an_answering_target_makes_the_vantage_healthy_until_the_answer_is_old() -> None:
    v = health()
    v.traced("a", trace((1,)), 0.0)  # a trace that died after the home router...
    v.answered(5.0)  # ...but a latency probe got through
    assert v.verdict(14.0) == Verdict(True, "ok")
    assert v.verdict(15.5) == Verdict(False, "local_hops_silent")  # the answer is now 10.5 s old


def test_traces_dying_at_the_first_hop_are_local_but_an_outage_further_on_is_not() -> None:
    v = health()
    v.traced("a", trace((1,)), 0.0)
    v.traced("b", trace(()), 1.0)
    assert v.verdict(2.0) == Verdict(False, "local_hops_silent")
    # One target's trace still gets past the ISP: the destination is down, not us.
    v.traced("b", trace((1, 2, 3, 4)), 3.0)
    assert v.verdict(4.0) == Verdict(True, "ok")
    # Evidence older than the trace window no longer counts either way.
    v.traced("a", trace((1,)), 200.0)
    assert v.verdict(200.0) == Verdict(False, "local_hops_silent")
    assert v.verdict(351.0) == Verdict(True, "ok")


def test_a_reached_trace_is_an_answer_and_forget_drops_removed_targets() -> None:
    v = health()
    v.traced("a", trace((1,)), 0.0)
    v.traced("b", trace((1, 2, 3), reached=True), 0.0)
    assert v.verdict(1.0) == Verdict(True, "ok")
    assert v.verdict(11.0) == Verdict(True, "ok")  # b's trace got past hop 1
    v.forget(["a"])
    v.traced("a", trace((1,)), 20.0)
    assert v.verdict(21.0) == Verdict(False, "local_hops_silent")
    v.set_windows(answer_window_s=10.0, trace_window_s=0.5)
    assert v.verdict(21.0) == Verdict(True, "ok")


def test_exporter_shows_the_verdict_and_every_reason() -> None:
    now = [0.0]
    v = health()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VantageCollector(v, clock=lambda: now[0]))
    v.egress(route=False, link_up=False)
    text = generate_latest(registry).decode()
    assert "nkprobe_vantage_healthy 0.0" in text
    for reason in REASONS:
        assert f'nkprobe_vantage_reason{{reason="{reason}"}} {1.0 if reason == "no_route" else 0.0}' in text
    v.egress(route=True, link_up=True)
    assert "nkprobe_vantage_healthy 1.0" in generate_latest(registry).decode()
