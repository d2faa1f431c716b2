"""The results store (agent.results): writes change live values, a snapshot is frozen on read."""

from __future__ import annotations

from agent.model import PingResult, Protocol, Target
from agent.results import RTT_BUCKETS, Results


def results() -> Results:
    return Results(
        agent_name="vp",
        version="0",
        targets=[Target("198.19.176.10"), Target("198.19.177.10")],
        ping_protocols=("icmp", "tcp"),
        trace_protocol="icmp",
        tags=("china_unicom", "transtelecom", "other", "unknown"),
        wall=lambda: 1000.0,
    )


def test_a_snapshot_never_changes_after_it_was_taken_and_is_shared_until_a_write() -> None:
    store = results()
    before = store.snapshot()
    assert store.snapshot() is before  # nothing changed: the same frozen object, no rebuild
    store.record_ping(PingResult("198.19.176.10", Protocol.ICMP, 1000.0, 0.040, reply_ttl=59))
    store.record_packets("icmp", 3)
    store.count_error("ping")
    store.set_fault("probing", True)
    store.record_trace("udp", 1.5)
    store.record_trace_outcome("198.19.177.10", "reached")
    after = store.snapshot()
    assert after is not before
    first = before.targets[0]
    assert first.probes_sent["icmp"] == 0 and first.rtt["icmp"].count == 0 and first.up is None
    assert first.recent == {} and first.last_rtt == {}
    assert before.packets_sent["icmp"] == 0 and before.errors["ping"] == 0 and not before.faults["probing"]
    assert before.trace_duration["udp"].count == 0 and before.targets[1].traceroutes["reached"] == 0
    now = after.targets[0]
    assert now.probes_sent == {"icmp": 1, "tcp": 0} and now.probes_answered == {"icmp": 1, "tcp": 0}
    assert now.up is True and now.last_answer == {"icmp": True}
    assert now.recent == {"icmp": (True,)} and now.last_rtt == {"icmp": 0.040}
    assert after.packets_sent["icmp"] == 3 and after.errors["ping"] == 1 and after.faults["probing"]
    assert after.trace_duration["udp"].count == 1 and after.targets[1].traceroutes["reached"] == 1


def test_histograms_are_cumulative_in_the_snapshot() -> None:
    store = results()
    for rtt in (0.040, 0.041, 0.3, 9.0):
        store.record_ping(PingResult("198.19.177.10", Protocol.TCP, 1000.0, rtt))
    h = store.snapshot().targets[1].rtt["tcp"]
    assert h.bounds == RTT_BUCKETS and h.count == 4 and abs(h.total - 9.381) < 1e-9
    assert h.counts[RTT_BUCKETS.index(0.05)] == 2 and h.counts[RTT_BUCKETS.index(0.3)] == 3
    assert h.counts[-2] == 3 and h.counts[-1] == 4  # 9 s is only in +Inf
    assert list(h.counts) == sorted(h.counts)


def test_a_reload_keeps_a_kept_targets_counters_and_drops_results_of_removed_ones() -> None:
    store = results()
    store.record_ping(PingResult("198.19.176.10", Protocol.ICMP, 1000.0, 0.040))
    store.reconfigure(
        agent_name="vp-2",
        targets=[Target("198.19.176.10", name="kept")],
        ping_protocols=("icmp", "tcp"),
        trace_protocol="icmp",
        tags=("china_unicom", "transtelecom", "other", "unknown"),
    )
    store.record_ping(PingResult("198.19.177.10", Protocol.ICMP, 1000.0, 0.040))  # removed: dropped
    snap = store.snapshot()
    assert snap.agent_name == "vp-2" and [t.target.name for t in snap.targets] == ["kept"]
    assert snap.targets[0].probes_sent["icmp"] == 1 and snap.targets[0].rtt["icmp"].count == 1
