"""SIGHUP in the lab: `nkprobe run` reloads targets, intervals and [upstreams], and keeps running on the old
config when the new one is invalid.

One agent, four reloads, each checked from /metrics and the log: what a reload applies (README
"Configuration": targets, probe and trace settings, [upstreams]), what it leaves alone (`agent.listen`
takes a restart; kept targets keep their counters and their tag), and that a config the agent cannot use
is refused with one log line while the old one goes on probing. Every check waits on its condition with a
bound (agent_harness.wait_for); the rate checks count probes within a window the old interval could
never fill.
"""

from __future__ import annotations

import re
import signal
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, Samples, agent_config, dump_toml, free_port, history, wait_for

pytestmark = pytest.mark.lab

CU, TTK = "china_unicom", "transtelecom"
CU_HOST, TTK_HOST, FLIP_HOST, NEW_HOST = "198.19.176.10", "198.19.177.20", "198.19.179.10", "198.19.176.20"
FAILED = "config reload failed, keeping the running config"


def prefix_of(address: str) -> str:
    return address.rsplit(".", 1)[0] + ".0/24"


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def targets_of(samples: Samples) -> set[str]:
    return {s["target"] for s in series(samples, "nkprobe_target_up")}


def tags_of(samples: Samples, target: str) -> set[str]:
    return {s["upstream"] for s in series(samples, "nkprobe_path_upstream") if s["target"] == target}


def tag(samples: Samples, target: str) -> str | None:
    for labels in series(samples, "nkprobe_path_upstream"):
        if labels["target"] == target and samples[("nkprobe_path_upstream", frozenset(labels.items()))] == 1:
            return labels["upstream"]
    return None


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels` (e.g. all protocols)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Reloader:
    """The agent's config file, rewritten from a dict, and SIGHUP with a wait for the reload's outcome."""

    def __init__(self, agent: Agent, config: Path) -> None:
        self.agent, self.path = agent, config
        self.data: dict[str, Any] = tomllib.loads(config.read_text())
        self.count = {"success": 0, "failure": 0}

    def reload(self, data: dict[str, Any], result: str = "success") -> None:
        self.path.write_text(dump_toml(data))
        assert self.agent.proc is not None
        self.agent.proc.send_signal(signal.SIGHUP)
        self.count[result] += 1
        want = self.count[result]
        wait_for(
            lambda: self.agent.value("nkprobe_config_reloads_total", result=result) == want,
            15,
            f"reload {result} #{want} not counted; log: {self.agent.log()}",
        )
        if result == "success":
            self.data = data


def copy(data: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(dump_toml(data))


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sighup_applies_targets_intervals_and_upstreams_and_refuses_a_bad_config(
    lab: LabInfo, tmp_path: Path
) -> None:
    config = agent_config(
        lab,
        tmp_path,
        state_dir=tmp_path / "state",
        targets=(CU_HOST, TTK_HOST, FLIP_HOST),
        ping_interval_s=2.0,
        trace_interval_s=60.0,
        max_pps=200,
    )
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    r = Reloader(agent, config)
    try:
        wait_for(
            lambda: (s := agent.scrape()) and tag(s, CU_HOST) == CU and tag(s, TTK_HOST) == TTK,
            30,
            f"no first tags; log: {agent.log()}",
        )
        wait_for(
            lambda: total(agent.scrape(), "nkprobe_probes_sent_total", target=CU_HOST) >= 1, 5, "no ping"
        )
        before = agent.scrape()
        assert targets_of(before) == {CU_HOST, TTK_HOST, FLIP_HOST}
        sent_before = total(before, "nkprobe_probes_sent_total", target=CU_HOST)

        # 1. Targets, both intervals, and agent.listen (which takes a restart) in one reload.
        new_port = free_port()
        data = copy(r.data)
        data["targets"] = [t for t in data["targets"] if t["address"] != FLIP_HOST]
        data["targets"].append({"address": NEW_HOST, "name": "added"})
        data["ping"]["interval_s"] = 0.25
        data["trace"]["interval_s"] = 2.0
        data["agent"]["listen"] = f"127.0.0.1:{new_port}"
        r.reload(data)
        after = agent.scrape()
        assert targets_of(after) == {CU_HOST, TTK_HOST, NEW_HOST}
        assert not [k for k in after if dict(k[1]).get("target") == FLIP_HOST]  # every series of it went
        assert tags_of(after, NEW_HOST) == {CU, TTK, "other", "unknown"}  # label sets before its first trace
        # A kept target keeps its tag and its counters (no reset for Prometheus' rate() to absorb).
        assert tag(after, CU_HOST) == CU and tag(after, TTK_HOST) == TTK
        assert total(after, "nkprobe_probes_sent_total", target=CU_HOST) >= sent_before
        # The new ping interval: 10 more probes of one target within 4 s (at most 3 a protocol, and it has at
        # most two, at the old 2 s interval).
        base = total(after, "nkprobe_probes_sent_total", target=CU_HOST)
        wait_for(
            lambda: total(agent.scrape(), "nkprobe_probes_sent_total", target=CU_HOST) >= base + 10,
            4,
            "the 0.25 s ping interval was not applied",
        )
        # The new trace interval: two more rounds of one target within 9 s (the old 60 s: the one a reload
        # starts, at most).
        rounds = total(agent.scrape(), "nkprobe_traceroutes_total", target=CU_HOST)
        flows = lab_flows(r.data)
        wait_for(
            lambda: total(agent.scrape(), "nkprobe_traceroutes_total", target=CU_HOST) >= rounds + 2 * flows,
            9,
            "the 2 s trace interval was not applied",
        )
        wait_for(lambda: tag(agent.scrape(), NEW_HOST) == CU, 15, f"added target never tagged: {agent.log()}")
        # agent.listen: logged as needing a restart, and the server stays where it was.
        assert re.search(
            r"agent\.listen changed; that takes a restart \(kept '127\.0\.0\.1:9931'\)", agent.log()
        )
        assert agent.healthy() and not listening(new_port)

        # 2. [upstreams]: the TransTeleCom group renamed. The label sets follow the new table; the next
        # trace tags with the new name, and a rename is a discovery, not a path change.
        data = copy(r.data)
        data["upstreams"] = {CU: [4837], "russia": [20485]}
        r.reload(data)
        renamed = agent.scrape()
        assert tags_of(renamed, TTK_HOST) == {CU, "russia", "other", "unknown"}
        assert not [s for s in series(renamed, "nkprobe_path_upstream") if s["upstream"] == TTK]
        wait_for(
            lambda: (s := agent.scrape()) and tag(s, TTK_HOST) == "russia" and tag(s, CU_HOST) == CU,
            15,
            f"the renamed group never tagged; log: {agent.log()}",
        )
        assert agent.value("nkprobe_path_changes_total", target=TTK_HOST, prefix=prefix_of(TTK_HOST)) == 0
        assert history(config) == []

        # 3. An invalid listen address: refused with one clear line, the running config goes on.
        data = copy(r.data)
        data["agent"]["listen"] = "no-port-here"
        data["ping"]["interval_s"] = 5.0
        data["targets"] = data["targets"][:1]
        r.reload(data, "failure")
        failures = [line for line in agent.log().splitlines() if FAILED in line]
        assert len(failures) == 1, failures
        assert " ERROR " in failures[0] and "agent.listen: must be HOST:PORT" in failures[0], failures[0]
        kept = agent.scrape()
        assert agent.value("nkprobe_fault", kind="config") == 1.0
        assert agent.value("nkprobe_config_last_reload_successful") == 0.0
        assert targets_of(kept) == {CU_HOST, TTK_HOST, NEW_HOST}
        assert tag(kept, TTK_HOST) == "russia"
        base = total(kept, "nkprobe_probes_sent_total", target=CU_HOST)
        wait_for(
            lambda: total(agent.scrape(), "nkprobe_probes_sent_total", target=CU_HOST) >= base + 10,
            4,
            "the old 0.25 s ping interval stopped after a refused reload",
        )
        assert agent.healthy()

        # 4. The operator fixes the file: the next SIGHUP applies it and the fault clears.
        data["agent"]["listen"] = r.data["agent"]["listen"]
        r.reload(data)
        assert agent.value("nkprobe_fault", kind="config") == 0.0
        assert agent.value("nkprobe_config_last_reload_successful") == 1.0
        assert targets_of(agent.scrape()) == {CU_HOST}
    finally:
        code = agent.stop()
    assert code == 0, agent.log()


def lab_flows(data: dict[str, Any]) -> int:
    """Flows per round: [trace] flows of the config, else the agent's default."""
    from agent.config import TraceSection

    return int(data.get("trace", {}).get("flows", TraceSection().flows))
