"""`nkprobe run` in the lab: Prometheus scrapes it, flips show up as one change each, faults are survived.

The agent's probe sockets are in the lab's vantage namespace (`--netns`), its HTTP server on 127.0.0.1 of
this namespace; Debian's real Prometheus scrapes it every second. Intervals are short (test config
derived from the lab's config.toml, with a packet budget the loopback lab can afford), so each test
takes seconds. Flip-to-metric latency with the lab's own settings is measured in bench/flip_bench.py.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab.info import LabInfo
from tests.support.agent_harness import (
    FLIP_PREFIX,
    FLIP_TARGETS,
    TAGS,
    Agent,
    Prometheus,
    agent_config,
    changes,
    history,
    lab_flip,
    tag_of,
    wait_for,
    wait_tags,
)

pytestmark = pytest.mark.lab

CU, TTK = "china_unicom", "transtelecom"
# A target of every kind: each fixed upstream, the split /24, and both hosts of the flip /24.
TARGETS = ("198.19.176.10", "198.19.177.20", "198.19.178.10", "198.19.179.10", "198.19.179.20")

# CONTRACT.md "Metrics", as exposed (counters with _total, histograms with _bucket/_sum/_count).
CONTRACT_METRICS = (
    "nkprobe_build_info",
    "nkprobe_agent_info",
    "nkprobe_packets_sent_total",
    "nkprobe_probes_sent_total",
    "nkprobe_probes_answered_total",
    "nkprobe_rtt_seconds_bucket",
    "nkprobe_rtt_seconds_sum",
    "nkprobe_rtt_seconds_count",
    "nkprobe_target_up",
    "nkprobe_path_upstream",
    "nkprobe_path_upstream_ratio",
    "nkprobe_path_changes_total",
    "nkprobe_path_last_change_timestamp_seconds",
    "nkprobe_path_hops",
    "nkprobe_path_reached",
    "nkprobe_border_rtt_seconds",
    "nkprobe_traceroutes_total",
    "nkprobe_traceroute_duration_seconds_bucket",
)


@pytest.fixture
def flip_restored(lab: LabInfo) -> Iterator[None]:
    """Start from china_unicom and leave the lab there, as the other lab tests expect."""
    lab_flip(lab, CU)
    try:
        yield
    finally:
        lab_flip(lab, CU)


def test_prometheus_scrapes_every_contract_metric_and_flips_count_once(
    lab: LabInfo, tmp_path: Path, flip_restored: None
) -> None:
    # Debian's prometheus is an install step of quickstart.sh: missing, this fails rather than skips.
    assert os.path.exists("/usr/bin/prometheus"), "apt-get install prometheus (quickstart.sh test does)"
    state_dir = tmp_path / "state"
    config = agent_config(lab, tmp_path, state_dir=state_dir, targets=TARGETS, max_pps=200)
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{agent.port}")
    try:
        # Every label set is there before the first probe answered; Prometheus sees the agent up.
        first = agent.scrape()
        for tag in TAGS:
            key = {"target": "198.19.178.10", "prefix": "198.19.178.0/24", "upstream": tag}
            assert ("nkprobe_path_upstream", frozenset(key.items())) in first
        wait_for(
            lambda: [r["value"][1] for r in prom.query('up{job="nkprobe"}')] == ["1"],
            30,
            f"Prometheus never saw up == 1: {prom.log_path.read_text()[-2000:]}",
        )
        names = {
            r["metric"]["__name__"] for r in prom.query('group by (__name__) ({__name__=~"nkprobe_.+"})')
        }
        missing = [m for m in CONTRACT_METRICS if m not in names]
        assert not missing, missing

        wait_tags(agent, CU)
        assert tag_of(agent, "198.19.176.10") == CU
        wait_for(lambda: tag_of(agent, "198.19.177.20") == TTK, 20, "177.20 not transtelecom")
        before = {t: changes(agent, t) for t in FLIP_TARGETS}

        for n, upstream in enumerate((TTK, CU), start=1):
            lab_flip(lab, upstream)
            took = wait_tags(agent, upstream)
            print(f"flip to {upstream} seen after {took:.1f} s")
            assert took < 20.0
            for t in FLIP_TARGETS:
                wait_for(lambda t=t, n=n: changes(agent, t) == before[t] + n, 10, f"{t}: changes_total")
        # Exactly one change per flip; the split /24 never changed.
        assert all(changes(agent, t) == before[t] + 2 for t in FLIP_TARGETS)
        split = {"target": "198.19.178.10", "prefix": "198.19.178.0/24"}
        assert agent.value("nkprobe_path_changes_total", **split) == 0.0
        ratio = {
            tag: agent.value(
                "nkprobe_path_upstream_ratio", target="198.19.179.10", prefix=FLIP_PREFIX, upstream=tag
            )
            for tag in TAGS
        }
        assert ratio[CU] == 1.0 and ratio[TTK] == 0.0
        wait_for(
            lambda: (
                [
                    r["value"][1]
                    for r in prom.query(f'nkprobe_path_changes_total{{target="{FLIP_TARGETS[0]}"}}')
                ]
                == [str(int(before[FLIP_TARGETS[0]] + 2))]
            ),
            10,
            "Prometheus does not have the change count",
        )

        # One history row per flip and target, in order.
        rows = [r for r in history(config) if r["prefix"] == FLIP_PREFIX]
        for t in FLIP_TARGETS:
            assert [(r["old"], r["new"]) for r in rows if r["target"] == t] == [(CU, TTK), (TTK, CU)]

        # kill -9, then start again on the same state: the rows are still there, metrics come back.
        agent.stop(signal.SIGKILL)
        agent.start()
        assert agent.value("nkprobe_fault", kind="history") == 0.0
        assert len([r for r in history(config) if r["prefix"] == FLIP_PREFIX]) == 4
        wait_tags(agent, CU)  # the first tag after a restart is a discovery, not a change
        assert all(changes(agent, t) == 0 for t in FLIP_TARGETS)
    finally:
        prom.stop()
        code = agent.stop()
    assert code == 0, agent.log()  # SIGTERM: history flushed, exit 0


def test_unwritable_state_dir_is_a_fault_metric_and_recovers(
    lab: LabInfo, tmp_path: Path, flip_restored: None
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be\n")
    config = agent_config(lab, tmp_path, state_dir=blocker / "agent", targets=FLIP_TARGETS, max_pps=200)
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: agent.value("nkprobe_fault", kind="history") == 1.0, 15, "no history fault")
        assert agent.value("nkprobe_history_write_errors_total") >= 1
        wait_tags(agent, CU)
        lab_flip(lab, TTK)
        wait_tags(agent, TTK)  # probing and tagging go on without a disk
        wait_for(lambda: agent.value("nkprobe_history_pending") >= 1, 5, "changes not queued")
        # The operator fixes the disk: the queued changes are written, the fault clears.
        blocker.unlink()
        blocker.mkdir()
        wait_for(lambda: agent.value("nkprobe_fault", kind="history") == 0.0, 20, "fault did not clear")
        wait_for(lambda: agent.value("nkprobe_history_pending") == 0.0, 10, "queue not written")
        assert len(history(config)) == 2
    finally:
        code = agent.stop()
    assert code == 0, agent.log()


def test_corrupt_history_is_moved_aside_reported_and_replaced(
    lab: LabInfo, tmp_path: Path, flip_restored: None
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "history.db").write_bytes(b"this is not an SQLite database\n" * 100)
    config = agent_config(lab, tmp_path, state_dir=state_dir, targets=FLIP_TARGETS[:1], max_pps=200)
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: agent.value("nkprobe_fault", kind="history") == 1.0, 15, "corruption not reported")
        moved = [p.name for p in state_dir.iterdir() if p.name.startswith("history.db.corrupt-")]
        assert moved, list(state_dir.iterdir())
        wait_for(lambda: tag_of(agent, FLIP_TARGETS[0]) == CU, 30, "no tag")
        lab_flip(lab, TTK)
        wait_for(lambda: tag_of(agent, FLIP_TARGETS[0]) == TTK, 30, "flip not seen")
        wait_for(lambda: agent.value("nkprobe_history_written_total") == 1.0, 10, "not written to the new db")
        assert [(r["old"], r["new"]) for r in history(config)] == [(CU, TTK)]
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
    shutil.rmtree(state_dir, ignore_errors=True)


def test_sighup_reloads_and_keeps_the_old_config_when_the_new_is_invalid(
    lab: LabInfo, tmp_path: Path
) -> None:
    config = agent_config(lab, tmp_path, state_dir=tmp_path / "state", targets=FLIP_TARGETS[:1], max_pps=200)
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    assert agent.proc is not None
    original = config.read_text()
    try:
        before = next(dict(k[1]) for k in agent.scrape() if k[0] == "nkprobe_agent_info")
        config.write_text(original.replace('name = "lab-', 'name = "renamed-', 1))
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: agent.value("nkprobe_config_reloads_total", result="success") == 1.0, 10, "no reload"
        )
        renamed = [k for k in agent.scrape() if k[0] == "nkprobe_agent_info"]
        assert len(renamed) == 1 and dict(renamed[0][1])["agent"].startswith("renamed-")
        assert dict(renamed[0][1])["id"] == before["id"] != ""  # a rename keeps the agent's id

        config.write_text(original + "\n[agent.nonsense]\n")  # invalid: the old config stays
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: agent.value("nkprobe_config_reloads_total", result="failure") == 1.0, 10, "no failure"
        )
        assert agent.value("nkprobe_config_last_reload_successful") == 0.0
        assert agent.value("nkprobe_fault", kind="config") == 1.0
        assert next(dict(k[1])["agent"] for k in agent.scrape() if k[0] == "nkprobe_agent_info").startswith(
            "renamed-"
        )
        assert agent.healthy()
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
