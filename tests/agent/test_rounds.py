"""agent.rounds, stepped by numbers: what a round of classified paths and a latency probe mean."""

from __future__ import annotations

from dataclasses import replace

from agent.model import Border, Classification, Hop, Path, PingResult, Protocol, Reply, ReplyKind, Target
from agent.rounds import Rounds
from agent.upstream_state import Trigger

from .test_scheduler import config

CU, TTK = "china_unicom", "transtelecom"
TARGET = Target("198.19.176.10")
OTHER_TARGET = Target("198.19.177.10")
BORDER = {CU: "10.0.1.1", TTK: "10.0.2.1"}


def path(tag: str, flow: int = 0) -> tuple[Path, Classification]:
    hops = (
        Hop(1, (Reply("192.168.1.1", 0.001, ReplyKind.TIME_EXCEEDED),), 1),
        Hop(2, (Reply(BORDER[tag], 0.090, ReplyKind.TIME_EXCEEDED),), 1),
        Hop(3, (Reply(TARGET.address, 0.100, ReplyKind.ECHO_REPLY),), 1),
    )
    p = Path(TARGET.address, Protocol.ICMP, flow, hops, True, 0.0, 0.2)
    return p, Classification(tag, Border(2, BORDER[tag], None), confidence="high")


def round_of(tag: str, flows: int = 4) -> list[tuple[Path, Classification]]:
    return [path(tag, flow) for flow in range(flows)]


def ping(ttl: int, rtt: float = 0.100) -> PingResult:
    return PingResult(TARGET.address, Protocol.ICMP, 0.0, rtt, ttl)


def test_a_round_gives_the_figures_and_confidence_of_the_path_that_carries_the_tag() -> None:
    rounds = Rounds(config(targets=(TARGET,)))
    first = rounds.traced(TARGET, round_of(CU), 10.0)
    assert first is not None and first.path_state.tag == CU and first.change is None
    assert (first.figures.hops, first.figures.reached) == (3, True)
    assert first.figures.border_upstream == 0.090 and first.figures.border_destination == 0.100
    assert first.confidence == "high"
    # One flow sees another upstream: not a change, and the tag is still backed by its own flows.
    split = rounds.traced(TARGET, [path(TTK, 0), *round_of(CU, 3)], 20.0)
    assert split is not None and split.path_state.tag == CU and split.confidence == "high"
    assert split.path_state.ratio[TTK] == 0.25


def test_a_round_of_another_upstream_backs_the_tag_low_then_confirms_one_change() -> None:
    rounds = Rounds(config(targets=(TARGET,), flows=1))
    for t in (1.0, 2.0):
        rounds.traced(TARGET, round_of(CU, 1), t)
    waiting = rounds.traced(TARGET, round_of(TTK, 1), 3.0)
    assert waiting is not None and waiting.path_state.tag == CU and waiting.confidence == "low"
    assert waiting.pending and rounds.pending(TARGET.address) and waiting.change is None
    confirmed = rounds.traced(TARGET, round_of(TTK, 1), 4.0)
    assert confirmed is not None and confirmed.change is not None and not confirmed.pending
    change = confirmed.change
    assert (change.change.old, change.change.new, change.change.at) == (CU, TTK, 4.0)
    assert change.classification is not None and change.classification.upstream == TTK
    assert change.path is not None and change.ratio[TTK] == 1.0


def test_no_classified_flow_is_no_figures_and_no_confidence() -> None:
    rounds = Rounds(config(targets=(TARGET,)))
    result = rounds.traced(TARGET, [], 1.0)
    assert result is not None and result.confidence is None and result.figures.hops is None
    unknown = rounds.traced(TARGET, [(path(CU)[0], Classification("unknown"))], 2.0)
    assert unknown is not None and unknown.confidence == "none"


def test_a_confirmed_change_makes_the_old_level_news_again() -> None:
    # Pings see the flip (TTL 55 -> 57) and fire once; the rounds confirm it. A flip back to TTL 55 soon
    # after is news only because the change made the watch forget the old path's TTL.
    rounds = Rounds(config(targets=(TARGET,), flows=1))
    assert all(rounds.pinged(ping(55)) is None for _ in range(10))
    fired = [rounds.pinged(ping(57)) for _ in range(3)]
    assert fired.count(Trigger.REPLY_TTL) == 1
    for t, tag in enumerate((CU, CU, TTK, TTK)):
        rounds.traced(TARGET, round_of(tag, 1), float(t))
    assert all(rounds.pinged(ping(57)) is None for _ in range(5))  # the new path settles
    back = [rounds.pinged(ping(55)) for _ in range(3)]  # 55 is well within the watch's memory of 30
    assert Trigger.REPLY_TTL in back


def test_configure_keeps_the_state_of_kept_targets_only() -> None:
    cfg = config(targets=(TARGET, OTHER_TARGET))
    rounds = Rounds(cfg)
    for t in (1.0, 2.0):
        rounds.traced(TARGET, round_of(CU), t)
        rounds.traced(
            OTHER_TARGET, [(replace(p, target=OTHER_TARGET.address), c) for p, c in round_of(TTK)], t
        )
    rounds.configure(config(targets=(TARGET,)))
    kept = rounds.traced(TARGET, round_of(CU), 3.0)
    assert kept is not None and kept.path_state.tag == CU and kept.path_state.rounds == 3
    assert rounds.traced(OTHER_TARGET, round_of(TTK), 3.0) is None  # removed while tracing
    assert rounds.pinged(replace(ping(55), target=OTHER_TARGET.address)) is None
    # A new hysteresis is a new rule for the tag: the target starts afresh.
    rounds.configure(config(targets=(TARGET,), hysteresis=3))
    fresh = rounds.traced(TARGET, round_of(CU), 4.0)
    assert fresh is not None and fresh.path_state.rounds == 1 and fresh.path_state.confirm == 3
