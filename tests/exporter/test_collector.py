"""The collector: every contract metric and label set from the first scrape, valid for promtool."""

from __future__ import annotations

import itertools
import math
import re
import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from agent.exporter import build_registry
from agent.exporter.exposition import text_format
from agent.model import PingResult, Protocol, Target
from agent.results import RTT_BUCKETS, Results
from agent.tracking import TagHysteresis
from tests.support.sample_results import TAGS, TARGETS, make_state

# CONTRACT.md "Metrics": name -> (type, labels).
CONTRACT: dict[str, tuple[str, set[str]]] = {
    "nkprobe_build_info": ("gauge", {"version"}),
    # `agent` is the contract's; issue 28 added the owner and the kept id (tests below).
    "nkprobe_agent_info": ("gauge", {"agent", "owner", "id"}),
    "nkprobe_packets_sent": ("counter", {"protocol"}),
    "nkprobe_probes_sent": ("counter", {"target", "prefix", "protocol"}),
    "nkprobe_probes_answered": ("counter", {"target", "prefix", "protocol"}),
    "nkprobe_rtt_seconds": ("histogram", {"target", "prefix", "protocol"}),
    "nkprobe_target_up": ("gauge", {"target", "prefix"}),
    "nkprobe_path_upstream": ("gauge", {"target", "prefix", "upstream"}),
    "nkprobe_path_upstream_ratio": ("gauge", {"target", "prefix", "upstream"}),
    "nkprobe_path_changes": ("counter", {"target", "prefix"}),
    "nkprobe_path_last_change_timestamp_seconds": ("gauge", {"target", "prefix"}),
    "nkprobe_path_hops": ("gauge", {"target", "prefix"}),
    "nkprobe_path_reached": ("gauge", {"target", "prefix"}),
    "nkprobe_border_rtt_seconds": ("gauge", {"target", "prefix", "side"}),
    "nkprobe_traceroutes": ("counter", {"target", "prefix", "outcome"}),
    "nkprobe_traceroute_duration_seconds": ("histogram", {"protocol"}),
}


def scrape(state: Results) -> str:
    return text_format(build_registry(state)).decode()  # the agent's own bytes (test_exposition.py)


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == name:
                out.append((dict(s.labels), s.value))
    return out


def test_every_contract_metric_and_label_set_is_present_before_any_probe() -> None:
    text = scrape(make_state())
    fams = families(text)
    for name, (kind, labels) in CONTRACT.items():
        assert name in fams, name
        fam = fams[name]
        assert fam.type == kind, name  # type: ignore[attr-defined]
        for s in fam.samples:  # type: ignore[attr-defined]
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    for t in TARGETS:
        key = {"target": t.address, "prefix": t.prefix}
        ups = {
            s[0]["upstream"]: s[1]
            for s in samples(text, "nkprobe_path_upstream")
            if s[0]["target"] == t.address
        }
        assert ups == {"china_unicom": 0.0, "transtelecom": 0.0, "other": 0.0, "unknown": 1.0}
        ratio = [s for s in samples(text, "nkprobe_path_upstream_ratio") if s[0]["target"] == t.address]
        assert {s[0]["upstream"] for s in ratio} == set(TAGS)
        for proto in ("icmp", "tcp"):
            assert ({**key, "protocol": proto}, 0.0) in samples(text, "nkprobe_probes_sent_total")
        for outcome in ("reached", "unreached", "error"):
            assert ({**key, "outcome": outcome}, 0.0) in samples(text, "nkprobe_traceroutes_total")
        sides = {
            s[0]["side"] for s in samples(text, "nkprobe_border_rtt_seconds") if s[0]["target"] == t.address
        }
        assert sides == {"upstream", "destination"}
    assert ({"version": "9.9.9"}, 1.0) in samples(text, "nkprobe_build_info")
    assert ({"agent": "lab-1", "owner": "", "id": ""}, 1.0) in samples(text, "nkprobe_agent_info")
    assert {s[0]["protocol"] for s in samples(text, "nkprobe_packets_sent_total")} == {"icmp", "udp", "tcp"}


def test_rtt_buckets_are_fine_between_100_and_500_ms() -> None:
    inside = [b for b in RTT_BUCKETS if 0.1 <= b <= 0.5]
    assert len(inside) >= 12
    assert max(b - a for a, b in itertools.pairwise(inside)) <= 0.05


def test_no_label_value_looks_like_a_hop_address_or_asn() -> None:
    state = make_state()
    ps = TagHysteresis(tags=TAGS)
    ps.observe(["china_unicom"], 1.0)
    ps.observe(["china_unicom"], 2.0)
    state.record_path(
        "198.19.176.10",
        tag=ps.tag,
        ratio=ps.ratio,
        changes=ps.changes,
        last_change_at=ps.last_change_at,
        hops=7,
        reached=True,
        border_rtt={"upstream": 0.02},
    )
    allowed_addresses = {t.address for t in TARGETS}
    for f in text_string_to_metric_families(scrape(state)):
        for s in f.samples:
            for key, value in s.labels.items():
                if key in ("target",):
                    assert value in allowed_addresses
                elif key == "prefix":
                    assert value in {t.prefix for t in TARGETS}
                else:
                    assert not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value), (s.name, key, value)
                    assert not re.fullmatch(r"(AS)?\d+", value), (s.name, key, value)


def test_results_show_up_in_the_scrape() -> None:
    state = make_state()
    state.record_ping(PingResult("198.19.176.10", Protocol.ICMP, 0.0, 0.150, 60))
    state.record_ping(PingResult("198.19.176.10", Protocol.TCP, 0.0, None))
    state.record_packets("tcp", 40)
    state.record_trace("tcp", 2.5)
    state.record_trace_outcome("198.19.176.10", "reached")
    ps = TagHysteresis(tags=TAGS)
    for t in range(2):
        ps.observe(["china_unicom", "transtelecom", "china_unicom", "china_unicom"], float(t))
    state.record_path(
        "198.19.176.10",
        tag=ps.tag,
        ratio=ps.ratio,
        changes=ps.changes,
        last_change_at=ps.last_change_at,
        hops=9,
        reached=True,
        border_rtt={"upstream": 0.03},
    )
    text = scrape(state)
    key = {"target": "198.19.176.10", "prefix": "198.19.176.0/24"}
    assert ({**key, "protocol": "icmp"}, 1.0) in samples(text, "nkprobe_probes_answered_total")
    assert ({**key, "protocol": "tcp"}, 0.0) in samples(text, "nkprobe_probes_answered_total")
    assert ({**key, "protocol": "tcp"}, 1.0) in samples(text, "nkprobe_probes_sent_total")
    assert ({"protocol": "tcp"}, 40.0) in samples(text, "nkprobe_packets_sent_total")
    assert ({**key}, 1.0) in samples(text, "nkprobe_target_up")  # one protocol answered
    assert ({**key, "protocol": "icmp", "le": "0.175"}, 1.0) in samples(text, "nkprobe_rtt_seconds_bucket")
    assert ({**key, "protocol": "icmp", "le": "0.125"}, 0.0) in samples(text, "nkprobe_rtt_seconds_bucket")
    assert ({**key, "upstream": "china_unicom"}, 1.0) in samples(text, "nkprobe_path_upstream")
    assert ({**key, "upstream": "transtelecom"}, 0.25) in samples(text, "nkprobe_path_upstream_ratio")
    assert ({**key}, 9.0) in samples(text, "nkprobe_path_hops")
    border = {
        s[0]["side"]: s[1]
        for s in samples(text, "nkprobe_border_rtt_seconds")
        if s[0]["target"] == key["target"]
    }
    assert border["upstream"] == 0.03 and math.isnan(border["destination"])
    assert ({**key, "outcome": "reached"}, 1.0) in samples(text, "nkprobe_traceroutes_total")
    assert ({"protocol": "tcp"}, 1.0) in samples(text, "nkprobe_traceroute_duration_seconds_count")


def test_reconfigure_keeps_counters_of_kept_targets_and_adds_new_ones() -> None:
    state = make_state()
    state.record_ping(PingResult("198.19.176.10", Protocol.ICMP, 0.0, 0.1))
    state.reconfigure(
        agent_name="lab-2",
        targets=(Target("198.19.176.10"), Target("198.19.177.10")),
        ping_protocols=("icmp", "tcp"),
        trace_protocol="tcp",
        tags=TAGS,
    )
    text = scrape(state)
    sent = {(s[0]["target"], s[0]["protocol"]): s[1] for s in samples(text, "nkprobe_probes_sent_total")}
    assert sent[("198.19.176.10", "icmp")] == 1.0
    assert sent[("198.19.177.10", "icmp")] == 0.0
    assert ("198.19.179.20", "icmp") not in sent
    assert ({"agent": "lab-2", "owner": "", "id": ""}, 1.0) in samples(text, "nkprobe_agent_info")


def test_promtool_check_metrics_accepts_the_scrape() -> None:
    # promtool comes with Debian's prometheus package, an install step of quickstart.sh: never a skip.
    assert shutil.which("promtool"), "promtool not found: apt-get install prometheus (as quickstart.sh does)"
    state = make_state()
    state.record_ping(PingResult("198.19.176.10", Protocol.ICMP, 0.0, 0.150, 60))
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape(state), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_without_traces_only_the_latency_series_are_per_target() -> None:
    """[trace] enabled = false (a census of the /22): no per-target path series, which would say nothing;
    the latency series and every family's header stay."""
    state = make_state()
    traced = scrape(state)
    state.reconfigure(
        agent_name="lab-1", targets=TARGETS, ping_protocols=("icmp", "tcp"), trace_protocol="tcp", tags=TAGS,
        traced=False,
    )  # fmt: skip
    census = scrape(state)
    for name in ("nkprobe_path_upstream", "nkprobe_path_hops", "nkprobe_traceroutes_total",
                 "nkprobe_border_rtt_seconds", "nkprobe_path_upstream_in_bgp"):  # fmt: skip
        assert samples(traced, name), name
        assert samples(census, name) == [], name
    assert len(samples(census, "nkprobe_rtt_seconds_count")) == len(TARGETS) * 2
    assert set(families(census)) == set(families(traced))


def test_a_scrape_renders_only_the_targets_that_changed() -> None:
    """Issue 25: a census page is 35k samples; an unchanged target's TargetSnapshot and rendered lines are
    kept from scrape to scrape, a changed one's are made anew, and the page is always what a fresh
    collector of the same results writes (test_exposition.py: and what prometheus_client writes from the
    samples, made when read)."""
    state = make_state()
    registry = build_registry(state)
    first = text_format(registry).decode()
    kept = {t.address: lines_of(registry, t.address) for t in TARGETS}
    before = state.snapshot().targets
    state.record_ping(PingResult(TARGETS[0].address, Protocol.ICMP, 1000.0, 0.25, 50))
    after = state.snapshot().targets
    assert after[0] is not before[0] and after[1] is before[1]
    second = text_format(registry).decode()
    # A new registry renders everything afresh: the same lines (but the process's own, CPU time...).
    assert ours(second) == ours(scrape(state)) != ours(first)
    assert lines_of(registry, TARGETS[1].address) is kept[TARGETS[1].address]
    assert lines_of(registry, TARGETS[0].address) is not kept[TARGETS[0].address]
    sent = {
        labels["target"]: v
        for labels, v in samples(second, "nkprobe_probes_sent_total")
        if labels["protocol"] == "icmp"
    }
    assert sent == {TARGETS[0].address: 1.0, TARGETS[1].address: 0.0}


def ours(page: str) -> list[str]:
    """The lines of a page that are the agent's (nkprobe_*), not the process's (process_*)."""
    return [line for line in page.splitlines() if "nkprobe_" in line]


def lines_of(registry: object, address: str) -> str:
    """The rendered lines of `address` in nkprobe_probes_sent as the registry's collector gives them."""
    (family,) = [f for f in registry.collect() if f.name == "nkprobe_probes_sent"]  # type: ignore[attr-defined]
    (lines,) = [b for b in family.blocks if f'target="{address}"' in b]
    return str(lines) if not isinstance(lines, str) else lines
