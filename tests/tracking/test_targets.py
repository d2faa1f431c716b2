"""agent.tracking.TrackedTargets stepped by numbers: what a round of tagged paths and a latency probe mean."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from agent.config import Config
from agent.model import Border, Classification, Hop, Path, PingResult, Protocol, Reply, ReplyKind, Target
from agent.tracking import TrackedTargets, Trigger
from tests.support.fakes import config

CU, TTK = "china_unicom", "transtelecom"
TARGET = Target("198.19.176.10")
OTHER_TARGET = Target("198.19.177.10")
# Per upstream: its border hop's address, the border's RTT and the destination's, and the hop count.
WAYS = {CU: ("10.0.1.1", 0.090, 0.100, 3), TTK: ("10.0.2.1", 0.170, 0.180, 4)}


def path(tag: str, flow: int = 0, target: Target = TARGET) -> tuple[Path, Classification]:
    border, border_rtt, rtt, hops = WAYS[tag]
    chain = [Hop(1, (Reply("192.168.1.1", 0.001, ReplyKind.TIME_EXCEEDED),), 1)]
    chain += [Hop(ttl, (), 1) for ttl in range(2, hops - 1)]  # silent hops before the border
    chain.append(Hop(hops - 1, (Reply(border, border_rtt, ReplyKind.TIME_EXCEEDED),), 1))
    chain.append(Hop(hops, (Reply(target.address, rtt, ReplyKind.ECHO_REPLY),), 1))
    p = Path(target.address, Protocol.ICMP, flow, tuple(chain), True, 0.0, 0.2)
    return p, Classification(tag, Border(hops - 1, border, None), confidence="high")


def round_of(tag: str, flows: int = 4, target: Target = TARGET) -> list[tuple[Path, Classification]]:
    return [path(tag, flow, target) for flow in range(flows)]


def ping(rounds: TrackedTargets, ttl: int, n: int, target: Target = TARGET) -> list[Trigger | None]:
    """`n` echo replies of `target` with reply TTL `ttl`; the triggers they fired."""
    result = PingResult(target.address, Protocol.ICMP, 0.0, 0.100, ttl)
    return [rounds.pinged(target, "icmp", result) for _ in range(n)]


def two_targets() -> Config:
    return config(targets=(TARGET, OTHER_TARGET))


def test_a_round_gives_the_figures_and_confidence_of_the_path_that_carries_the_tag() -> None:
    rounds = TrackedTargets(config(targets=(TARGET,)))
    first = rounds.traced(TARGET, round_of(CU), 10.0)
    assert first is not None and first.status.tag == CU and first.change is None
    assert (first.figures.hops, first.figures.reached) == (3, True)
    assert first.figures.border_upstream == 0.090 and first.figures.border_destination == 0.100
    assert first.confidence == "high"
    # The first flow sees the other upstream: not a change, and the figures are still the tag's path's.
    split = rounds.traced(TARGET, [path(TTK, 0), *round_of(CU, 3)], 20.0)
    assert split is not None and split.status.tag == CU and split.confidence == "high"
    assert (split.figures.hops, split.figures.border_upstream) == (3, 0.090)
    assert split.status.ratio[TTK] == 0.25


def test_a_round_of_another_upstream_backs_the_tag_low_then_confirms_one_change() -> None:
    rounds = TrackedTargets(config(targets=(TARGET,)))
    rounds.traced(TARGET, round_of(CU), 1.0)  # four agreeing flows confirm at once
    waiting = rounds.traced(TARGET, round_of(TTK, 1), 3.0)  # one flow: not yet
    assert waiting is not None and waiting.status.tag == CU and waiting.confidence == "low"
    assert rounds.pending(TARGET) and waiting.change is None
    assert (waiting.figures.hops, waiting.figures.border_upstream) == (4, 0.170)  # the only path there is
    confirmed = rounds.traced(TARGET, round_of(TTK, 1), 4.0)
    assert confirmed is not None and confirmed.change is not None
    assert rounds.pending(TARGET)  # one more round soon after a change (a flip back right away)
    change = confirmed.change
    assert (change.change.old, change.change.new, change.change.at) == (CU, TTK, 4.0)
    assert change.classification is not None and change.classification.upstream == TTK
    assert change.path is not None and change.ratio[TTK] == 1.0


def test_a_rounds_result_holds_values_that_later_rounds_leave_alone() -> None:
    # The results store gets values, never the live hysteresis: what a round said stays what it said.
    rounds = TrackedTargets(config(targets=(TARGET,)))
    first = rounds.traced(TARGET, round_of(CU), 1.0)
    assert first is not None
    before = dataclasses.astuple(first.status)
    later = rounds.traced(TARGET, round_of(TTK), 2.0)
    assert later is not None and later.status.tag == TTK and later.status.changes == 1
    assert dataclasses.astuple(first.status) == before
    assert (first.status.tag, first.status.ratio[CU], first.status.changes) == (CU, 1.0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status.tag = TTK  # type: ignore[misc]


def test_no_classified_flow_is_no_figures_and_no_confidence() -> None:
    rounds = TrackedTargets(config(targets=(TARGET,)))
    result = rounds.traced(TARGET, [], 1.0)
    assert result is not None and result.confidence is None and result.figures.hops is None
    unknown = rounds.traced(TARGET, [(path(CU)[0], Classification("unknown"))], 2.0)
    assert unknown is not None and unknown.confidence == "none"


def test_a_confirmed_change_makes_the_old_level_news_again_for_that_target_only() -> None:
    # Both targets' pings see TTL 55, then 57 (a flip the watch fires on once). A flip back to 55 soon
    # after is news only for a target whose watch forgot 55: the one whose rounds confirmed a change.
    rounds = TrackedTargets(two_targets())
    for t in (TARGET, OTHER_TARGET):
        assert ping(rounds, 55, 10, t) == [None] * 10
        assert ping(rounds, 57, 3, t).count(Trigger.REPLY_TTL) == 1
    rounds.traced(TARGET, round_of(CU), 1.0)  # the first tag: a discovery, not a change
    assert ping(rounds, 55, 3) == [None] * 3  # so 55 is still remembered
    rounds.traced(TARGET, round_of(TTK), 2.0)  # a change, confirmed while the pings show 55
    # The watch keeps the latest answer's level (55, the new path's) and forgets the rest: the new path
    # stays quiet, and a flip back to 57 right after the change is news at once (before, the first
    # answers after the change set the level, and a flip back among them went unseen).
    assert ping(rounds, 55, 5) == [None] * 5
    assert Trigger.REPLY_TTL in ping(rounds, 57, 3)
    assert ping(rounds, 57, 3, OTHER_TARGET) == [None] * 3  # the other target's watch remembers 57


def test_configure_keeps_the_state_of_kept_targets_only() -> None:
    rounds = TrackedTargets(two_targets())
    rounds.traced(TARGET, round_of(CU), 1.0)
    rounds.traced(OTHER_TARGET, round_of(TTK, target=OTHER_TARGET), 1.0)
    for t in (TARGET, OTHER_TARGET):
        ping(rounds, 55, 10, t)
    rounds.configure(config(targets=(TARGET,)))
    kept = rounds.traced(TARGET, round_of(CU), 3.0)
    assert kept is not None and kept.status.tag == CU and kept.status.rounds == 2
    assert ping(rounds, 57, 2) == [None, Trigger.REPLY_TTL]  # its watch remembers 55
    assert rounds.traced(OTHER_TARGET, round_of(TTK, target=OTHER_TARGET), 3.0) is None  # removed
    assert ping(rounds, 57, 3, OTHER_TARGET) == [None] * 3
    # Back again: a new target, its tag unknown until confirmed.
    rounds.configure(two_targets())
    back = rounds.traced(OTHER_TARGET, round_of(TTK, 1, target=OTHER_TARGET), 4.0)
    assert back is not None and back.status.tag == "unknown"


def test_a_new_rule_for_the_tag_starts_it_afresh() -> None:
    for new in (
        config(targets=(TARGET,), hysteresis=3),
        replace(config(targets=(TARGET,)), upstreams={CU: (4837,), TTK: (20485,), "intelsat": (22351,)}),
    ):
        rounds = TrackedTargets(config(targets=(TARGET,)))
        rounds.traced(TARGET, round_of(CU), 1.0)
        rounds.configure(new)
        fresh = rounds.traced(TARGET, round_of(CU, 1), 2.0)
        assert fresh is not None and fresh.status.rounds == 1 and fresh.status.tag == "unknown"
        assert fresh.status.tags == (*new.upstreams, "other", "unknown")


def test_a_confirmed_change_asks_for_one_more_round_soon() -> None:
    """A flip back right after a change may settle in the latency watches as the new level (they have just
    forgotten the old path): one more round a moment later sees it."""
    rounds = TrackedTargets(two_targets())
    rounds.traced(TARGET, round_of(CU), 1.0)
    assert not rounds.pending(TARGET)
    result = rounds.traced(TARGET, round_of(TTK), 2.0)
    assert result is not None and result.change is not None
    assert rounds.pending(TARGET) and not rounds.pending(OTHER_TARGET)
    again = rounds.traced(TARGET, round_of(TTK), 3.0)
    assert again is not None and again.change is None
    assert not rounds.pending(TARGET)
