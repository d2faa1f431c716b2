"""Change detection: hysteresis, the split /24 that must not flap, latency triggers. Pure, no clock."""

from __future__ import annotations

import random

from agent.tracking import LatencyWatch, TagHysteresis, Trigger, ratios, round_verdict, tag_values

TAGS = tag_values(["china_unicom", "transtelecom"])
CU, TTK = "china_unicom", "transtelecom"


def fresh(confirm: int = 2) -> TagHysteresis:
    return TagHysteresis(tags=TAGS, confirm=confirm)


def test_tag_values_always_end_with_other_and_unknown() -> None:
    assert TAGS == (CU, TTK, "other", "unknown")
    assert tag_values(["a", "other"]) == ("a", "other", "unknown")


def test_first_tag_needs_confirm_traces_and_is_not_a_change() -> None:
    s = fresh()
    assert s.observe([CU], 0.0) is None  # one flow: one trace
    assert s.tag == "unknown"
    assert s.pending
    assert s.observe([CU], 1.0) is None
    assert s.tag == CU
    assert s.changes == 0 and s.last_change_at is None


def test_a_unanimous_multi_flow_round_is_as_many_agreeing_traces() -> None:
    s = fresh()
    s.observe([CU] * 4, 0.0)
    assert s.tag == CU  # 4 agreeing traces >= 2
    change = s.observe([TTK, TTK, "unknown", TTK], 10.0)
    assert change is not None and (change.old, change.new) == (CU, TTK)
    assert s.observe([CU, TTK, TTK, TTK], 20.0) is None  # a round straddling a change: mixed, nothing


def test_change_is_declared_after_n_agreeing_traces_exactly_once() -> None:
    s = fresh(confirm=3)
    for t in range(3):
        s.observe([CU], float(t))
    assert s.tag == CU
    assert s.observe([TTK], 10.0) is None
    assert s.observe([TTK], 11.0) is None
    change = s.observe([TTK], 12.0)
    assert change is not None and (change.old, change.new, change.at) == (CU, TTK, 12.0)
    assert s.changes == 1 and s.last_change_at == 12.0
    for t in range(13, 20):
        assert s.observe([TTK, TTK], float(t)) is None
    assert s.changes == 1


def test_unknown_needs_confirm_rounds_not_flows() -> None:
    s = fresh()
    s.observe([CU] * 4, 0.0)
    s.observe(["unknown"] * 4, 1.0)
    assert s.tag == CU  # one bad round of four flows is one round
    s.observe(["unknown"] * 4, 2.0)
    assert s.tag == "unknown"


def test_one_odd_round_is_not_a_change() -> None:
    s = fresh()
    for t, tags in enumerate([[CU], [CU], [TTK], [CU], [TTK], [CU], [CU]]):
        assert s.observe(tags, float(t)) is None
    assert s.tag == CU and s.changes == 0


def test_failed_round_does_not_break_or_extend_a_streak() -> None:
    s = fresh()
    s.observe([CU], 0.0)
    s.observe([CU], 1.0)
    s.observe([TTK], 2.0)
    assert s.observe([], 3.0) is None  # every trace failed
    assert s.observe([TTK], 4.0) is not None


def test_split_prefix_never_flaps_however_flows_fall() -> None:
    rng = random.Random(7)
    s = fresh()
    s.observe([CU, CU, CU, CU], 0.0)
    s.observe([CU, CU, CU, CU], 1.0)
    for t in range(2, 500):
        flows = [rng.choice([CU, TTK]) for _ in range(4)]
        if len(set(flows)) == 1:
            flows[0] = CU if flows[0] == TTK else TTK  # keep every round split
        s.observe(flows, float(t))
        assert s.tag == CU
    assert s.changes == 0
    assert 0.0 < s.ratio[CU] < 1.0 and abs(s.ratio[CU] + s.ratio[TTK] - 1.0) < 1e-9


def test_split_prefix_first_seen_takes_majority_then_keeps_it() -> None:
    s = fresh()
    s.observe([CU, TTK, TTK, TTK], 0.0)
    s.observe([CU, CU, TTK, TTK], 1.0)
    assert s.tag == TTK  # 5 of 8 flows
    s.observe([CU, CU, CU, TTK], 2.0)
    s.observe([CU, CU, CU, TTK], 3.0)
    assert s.tag == TTK and s.changes == 0


def test_split_ending_on_other_upstream_is_one_change() -> None:
    s = fresh()
    s.observe([CU, CU], 0.0)
    s.observe([CU, CU], 1.0)
    s.observe([CU, TTK], 2.0)
    s.observe([CU, TTK], 3.0)
    s.observe([TTK], 4.0)
    assert s.observe([TTK], 5.0) is not None
    assert s.changes == 1


def test_unknown_interlude_counts_once_and_back_to_same_counts_never() -> None:
    s = fresh()
    for t in range(2):
        s.observe([CU], float(t))
    for t in range(2, 5):
        s.observe(["unknown"], float(t))
    assert s.tag == "unknown"
    for t in range(5, 7):
        assert s.observe([CU], float(t)) is None
    assert s.tag == CU and s.changes == 0
    for t in range(7, 9):
        s.observe(["unknown"], float(t))
    s.observe([TTK], 9.0)
    change = s.observe([TTK], 10.0)
    assert change is not None and change.old == CU
    assert s.changes == 1


def test_unconfigured_group_name_is_other() -> None:
    s = fresh(confirm=1)
    s.observe(["intelsat"], 0.0)
    assert s.tag == "other"
    assert s.ratio["other"] == 1.0


def test_round_verdict_and_ratios() -> None:
    assert round_verdict([CU, "unknown"]) == CU
    assert round_verdict([CU, TTK, "unknown"]) == "mixed"
    assert ratios([CU, TTK, TTK, "unknown"], TAGS) == {CU: 0.25, TTK: 0.5, "other": 0.0, "unknown": 0.25}


def test_latency_watch_rtt_level_shift() -> None:
    w = LatencyWatch(window=5)
    fired = [w.observe(0.100, 60) for _ in range(10)]
    assert fired == [None] * 10
    fired = [w.observe(0.180, 60) for _ in range(5)]
    assert fired.count(Trigger.RTT_LEVEL) == 1
    assert fired.index(Trigger.RTT_LEVEL) == 2  # the median moves once 3 of 5 are new
    assert [w.observe(0.181, 60) for _ in range(10)] == [None] * 10


def test_latency_watch_jitter_below_threshold_is_quiet() -> None:
    rng = random.Random(1)
    w = LatencyWatch()
    fired = [w.observe(0.280 + rng.uniform(-0.02, 0.02), 50) for _ in range(1000)]
    assert Trigger.RTT_LEVEL not in fired


def test_latency_watch_ttl_needs_two_and_fires_once() -> None:
    w = LatencyWatch()
    w.observe(0.1, 60)
    assert w.observe(0.1, 58) is None
    assert w.observe(0.1, 60) is None  # one odd reply
    assert w.observe(0.1, 58) is None
    assert w.observe(0.1, 58) is Trigger.REPLY_TTL
    assert w.observe(0.1, 58) is None


def test_latency_watch_unreachable_once_per_outage_and_on_return() -> None:
    w = LatencyWatch(loss_limit=3)
    assert [w.observe(None, None) for _ in range(5)] == [None] * 5  # never answered: no trigger
    w.observe(0.1, 60)
    fired = [w.observe(None, None) for _ in range(10)]
    assert fired == [None, None, Trigger.UNREACHABLE] + [None] * 7
    assert w.observe(0.1, 60) is Trigger.UNREACHABLE  # back: trace again
    assert w.observe(0.1, 60) is None


def test_latency_watch_split_prefix_is_quiet_after_warm_up() -> None:
    # A /24 split per flow: each TCP probe (own source port) takes either path, 40 ms/TTL 58 or 25 ms/59.
    rng = random.Random(5)
    w = LatencyWatch()
    fired = []
    for _ in range(2000):
        cu = rng.random() < 0.5
        fired.append(w.observe((0.040 if cu else 0.025) + rng.uniform(0, 0.002), 58 if cu else 59))
    triggers = [i for i, f in enumerate(fired) if f is not None]
    assert all(i < 40 for i in triggers), triggers  # only while it first learns both paths


def test_latency_watch_flip_fires_once_on_a_level_not_seen_lately() -> None:
    w = LatencyWatch()
    for _ in range(60):
        assert w.observe(0.040, 58) is None
    fired = [w.observe(0.025, 59) for _ in range(60)]
    assert fired.count(Trigger.REPLY_TTL) == 1 and fired.index(Trigger.REPLY_TTL) == 1
    assert fired.count(Trigger.RTT_LEVEL) <= 1
    assert sum(f is not None for f in fired) <= 2


def test_latency_watch_reset_keeps_the_latest_level_so_a_flip_back_is_news() -> None:
    """After a confirmed change the watch forgets the old path but keeps the latest answer (the new
    path's): a flip back to the old RTT level within the first `window` answers fires, as the NAT lab's
    flip back a second after the change needs; the new path's own level does not."""
    w = LatencyWatch(window=5)
    assert [w.observe(0.025, 60) for _ in range(8)] == [None] * 8  # the new path, 25 ms
    w.reset()
    assert [w.observe(0.025, 60) for _ in range(6)] == [None] * 6  # the same level: quiet
    w.reset()
    back = [w.observe(0.040, 60) for _ in range(5)]  # the old path again, 40 ms, the same TTL
    assert back.count(Trigger.RTT_LEVEL) == 1, back
