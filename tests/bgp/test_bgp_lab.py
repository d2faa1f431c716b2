"""The real `nkprobe run` in the namespace lab with a [bgp] snapshot: the traced upstream of each /24
against what the snapshot says, exported as nkprobe_path_upstream_in_bgp, and a SIGHUP that picks up a
new snapshot. The lab's destination is 198.19.176.0/22 (AS131279), .176 via the China-like chain
(AS4837), .177 via the TTK-like one (AS20485): agent/lab/README.md."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, agent_config, wait_for

pytestmark = pytest.mark.lab

CU_TARGET, TTK_TARGET = "198.19.176.10", "198.19.177.10"
CU_PREFIX, TTK_PREFIX = "198.19.176.0/24", "198.19.177.0/24"


def _looking_glass(paths: dict[str, str]) -> str:
    """A RIPEstat looking-glass response (tests/fixtures/bgp/README.md) with one route per prefix."""
    peers = [{"prefix": p, "as_path": path, "asn_origin": "131279"} for p, path in paths.items()]
    return json.dumps(
        {
            "status": "ok",
            "data_call_name": "looking-glass",
            "data": {"rrcs": [{"rrc": "RRC00", "peers": peers}], "latest_time": "2026-01-15T08:00:00"},
        }
    )


def _in_bgp(agent: Agent, target: str, prefix: str) -> float:
    return agent.value("nkprobe_path_upstream_in_bgp", target=target, prefix=prefix)


def test_agent_cross_checks_traces_with_the_snapshot_and_reloads_it(lab: LabInfo, tmp_path: Path) -> None:
    snapshot = tmp_path / "looking-glass.json"
    # BGP (wrongly, for this lab) shows only the China-side neighbour for both /24s.
    snapshot.write_text(_looking_glass({CU_PREFIX: "64500 4837 131279", TTK_PREFIX: "64500 4837 131279"}))
    config = agent_config(
        lab,
        tmp_path,
        state_dir=tmp_path / "state",
        targets=(CU_TARGET, TTK_TARGET),
        trace_interval_s=2.0,
        max_pps=200,
    )
    # The lab's [bgp] has live = false (nothing of the lab is in RIS); the snapshot goes beside it.
    config.write_text(config.read_text().replace("[bgp]\n", f'[bgp]\nsnapshot = ["{snapshot}"]\n', 1))
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    try:
        # Before the first trace of .177 it cannot tell (NaN); the lab's traces take milliseconds, so the
        # first may already be done by the first scrape, and it disagrees. Never "agrees" here.
        first = _in_bgp(agent, TTK_TARGET, TTK_PREFIX)
        assert math.isnan(first) or first == 0.0, first
        assert agent.value("nkprobe_bgp_snapshot_timestamp_seconds") == 1768464000.0
        wait_for(lambda: _in_bgp(agent, CU_TARGET, CU_PREFIX) == 1.0, 40, "the China-side /24 never agreed")
        wait_for(lambda: _in_bgp(agent, TTK_TARGET, TTK_PREFIX) == 0.0, 40, "the TTK /24 never disagreed")
        # The snapshot now shows AS20485 for .177: after SIGHUP the traced upstream is in BGP again.
        snapshot.write_text(
            _looking_glass({CU_PREFIX: "64500 4837 131279", TTK_PREFIX: "64500 20485 131279"})
        )
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _in_bgp(agent, TTK_TARGET, TTK_PREFIX) == 1.0, 20, "the reload did not re-read it")
        # A broken snapshot refuses the reload and keeps the last good one.
        snapshot.write_text("{")
        agent.proc.send_signal(signal.SIGHUP)
        failed = {"result": "failure"}
        wait_for(lambda: agent.value("nkprobe_config_reloads_total", **failed) == 1.0, 20, "no failed reload")
        assert _in_bgp(agent, TTK_TARGET, TTK_PREFIX) == 1.0
    finally:
        assert agent.stop() == 0, agent.log()
