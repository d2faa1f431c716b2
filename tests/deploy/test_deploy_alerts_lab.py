"""The shipped alert rules (deploy/central/rules/*.yml) in Debian's real Prometheus, over two real
`nkprobe run` agents probing the lab, made true from the lab and false again:

- NkprobePrefixUpstreamChanged: `nkprobe lab flip transtelecom`, then back;
- NkprobeTargetUnreachableFromMostAgents: a blackhole route for one target at the lab's border router,
  then removed (two agents, since the rule needs at least two);
- NkprobeAgentNotReporting: one agent killed, then started again;
- NkprobeAllPrefixesOnOneUpstream: the agents' two /24s on china_unicom, until the flip.

Every expression, `for:`, label and annotation is the shipped one. Two things are not, each because a
live test of seconds cannot wait for them:
- A rule group's `interval:` (1m) overrides Prometheus's global evaluation_interval, so the copy loaded
  here has `interval: 1s` in each group and nothing else changed (asserted).
- `for:` is 10 to 30 minutes: here each alert goes *pending* (the real expression true, with the
  alert's labels) and back to inactive; that it fires after its `for:` and not before is shown by the
  promtool unit tests in deploy/central/tests (tests/deploy/test_deploy_central.py runs them).
NkprobePrefixUpstreamChanged compares with the fleet's majority an hour ago (`offset 1h`): that hour is
backfilled (promtool tsdb create-blocks-from openmetrics) as the recorded consensus of the lab's flip /24
on china_unicom, the lab's starting state, before Prometheus starts.

The agents' HTTP servers are on 127.0.0.1 here, their probe sockets in the lab's vantage namespace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, agent_config, free_port, lab_flip, scrape_jobs, stop_group
from tests.support.deployhelp import CENTRAL, need_tool
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

CU, TTK = "china_unicom", "transtelecom"
FLIP_TARGET, FLIP_PREFIX = "198.19.179.10", "198.19.179.0/24"
FAULT_TARGET, FAULT_PREFIX = "198.19.176.10", "198.19.176.0/24"
AGENTS = ("alerts-a1", "alerts-a2")
CHANGED, UNREACHABLE, NOT_REPORTING = (
    "NkprobePrefixUpstreamChanged",
    "NkprobeTargetUnreachableFromMostAgents",
    "NkprobeAgentNotReporting",
)
Alert = frozenset[tuple[str, str]]  # an active alert's labels


def alert(name: str, **labels: str) -> Alert:
    return frozenset({"alertname": name, **labels}.items())


# The lab's targets here are in two /24s, both on china_unicom at the start: every observed /24 on one
# upstream, which NkprobeAllPrefixesOnOneUpstream reports (pending) until the flip.
ONE_UPSTREAM_CU = alert("NkprobeAllPrefixesOnOneUpstream", upstream=CU, severity="info")
STEP_TIMEOUT_S = 45.0  # each change of state; they take a few seconds on an idle machine


def rules_copy(directory: Path) -> list[Path]:
    """The shipped rule files with each group's `interval` set to 1s; asserts nothing else differs."""
    out = []
    for shipped in sorted((CENTRAL / "rules").glob("*.yml")):
        data = yaml.safe_load(shipped.read_text())
        for group in data["groups"]:
            group["interval"] = "1s"
        copy = directory / shipped.name
        copy.write_text(yaml.safe_dump(data, sort_keys=False))
        original = yaml.safe_load(shipped.read_text())
        again = yaml.safe_load(copy.read_text())
        assert [g["rules"] for g in again["groups"]] == [g["rules"] for g in original["groups"]]
        assert [{k: v for k, v in g.items() if k != "interval"} for g in again["groups"]] == [
            {k: v for k, v in g.items() if k != "interval"} for g in original["groups"]
        ]
        out.append(copy)
    assert {p.name for p in out} >= {"nkprobe.alerts.rules.yml", "nkprobe.rules.yml"}
    return out


def backfill_hour_ago(data_dir: Path, work: Path) -> None:
    """An hour ago the fleet's majority for the flip /24 was china_unicom, as the recording rule
    prefix_upstream:nkprobe_path_upstream:consensus would have stored it (one sample every 30 s)."""
    now = int(time.time())
    name = "prefix_upstream:nkprobe_path_upstream:consensus"
    lines = [f"# TYPE {name} gauge"]
    # From 70 minutes ago to 55 minutes ago: `offset 1h` (5 minutes' look-back) sees it for the next 5.
    for ts in range(now - 70 * 60, now - 55 * 60, 30):
        lines.append(f'{name}{{prefix="{FLIP_PREFIX}",upstream="{CU}"}} 1 {ts}')
        lines.append(f'{name}{{prefix="{FLIP_PREFIX}",upstream="{TTK}"}} 0 {ts}')
    lines.append("# EOF")
    source = work / "hour-ago.om"
    source.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [need_tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


class AlertingPrometheus:
    """/usr/bin/prometheus with the shipped rules, scraping the agents every second as the forwarder's
    scrape config labels them (honor_labels, `agent` and `instance` = the agent's name)."""

    def __init__(self, directory: Path, agents: dict[str, Agent]) -> None:
        self.port = free_port()
        data = directory / "tsdb"
        data.mkdir()
        backfill_hour_ago(data, directory)
        jobs = scrape_jobs(agents)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rules_copy(directory)],
            "scrape_configs": jobs,
        }
        path = directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run([need_tool("promtool"), "check", "config", str(path)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = directory / "prometheus.log"
        cmd = [need_tool("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={data}",
               f"--web.listen-address=127.0.0.1:{self.port}"]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.ready, 30, lambda: f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.load(r)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                return True
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))[
            "data"
        ]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending or firing), each with `labels` and `state`."""
        found: list[dict[str, Any]] = self.get("/api/v1/alerts")["data"]["alerts"]
        return found

    def active(self) -> set[Alert]:
        return {frozenset(a["labels"].items()) for a in self.alerts()}

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture
def lab_restored(lab: LabInfo) -> Iterator[LabInfo]:
    """The lab on china_unicom without the blackhole, before and after (other tests expect that)."""
    border = f"{lab.prefix}border"
    lab_flip(lab, CU)
    subprocess.run(["ip", "-n", border, "route", "del", f"{FAULT_TARGET}/32"], capture_output=True)
    try:
        yield lab
    finally:
        subprocess.run(["ip", "-n", border, "route", "del", f"{FAULT_TARGET}/32"], capture_output=True)
        lab_flip(lab, CU)


def test_shipped_alerts_go_pending_from_lab_faults_and_resolve(lab_restored: LabInfo, tmp_path: Path) -> None:
    lab = lab_restored
    agents: dict[str, Agent] = {}
    prometheus: AlertingPrometheus | None = None
    try:
        for name in AGENTS:
            directory = tmp_path / name
            directory.mkdir()
            config = agent_config(
                lab, directory, state_dir=directory / "state", targets=[FLIP_TARGET, FAULT_TARGET],
                ping_interval_s=0.3, trace_interval_s=3.0, name=name, max_pps=100,
            )  # fmt: skip
            agents[name] = Agent(lab, config, directory / "agent.log").start()
        prometheus = AlertingPrometheus(tmp_path, agents)
        p = prometheus

        consensus = "prefix_upstream:nkprobe_path_upstream:consensus"

        def majority(upstream: str) -> bool:
            return bool(p.query(f'{consensus}{{prefix="{FLIP_PREFIX}", upstream="{upstream}"}} == 1'))

        def fleet_up() -> bool:
            return len(p.query(f'target:nkprobe_target_up:avg{{target="{FAULT_TARGET}"}} == 1')) == 1

        def active_are(*expected: Alert) -> Callable[[], bool]:
            return lambda: p.active() == set(expected)

        # Both /24s observed are on china_unicom, the lab's start: the one-upstream alert, and only it.
        def both_agents() -> bool:
            agents_up = p.query(f'target:nkprobe_target_up:agents{{target="{FAULT_TARGET}"}} == 2')
            return bool(agents_up) and fleet_up() and majority(CU)

        # Both agents scraped and recorded (their first scrapes need not come in the same second).
        wait_for(both_agents, STEP_TIMEOUT_S, lambda: f"not both agents up: {p.query('up')}")
        wait_for(
            active_are(ONE_UPSTREAM_CU), STEP_TIMEOUT_S, lambda: f"not just {ONE_UPSTREAM_CU}: {p.alerts()}"
        )

        # The flip /24 moves to the other chain; one target stops answering both agents.
        lab_flip(lab, TTK)
        border = f"{lab.prefix}border"
        subprocess.run(["ip", "-n", border, "route", "add", "blackhole", f"{FAULT_TARGET}/32"], check=True)
        changed = alert(CHANGED, prefix=FLIP_PREFIX, upstream=TTK, severity="info")
        unreachable = alert(UNREACHABLE, target=FAULT_TARGET, prefix=FAULT_PREFIX, severity="warning")
        wait_for(active_are(changed, unreachable), STEP_TIMEOUT_S, lambda: f"not pending: {p.alerts()}")
        assert {a["state"] for a in p.alerts()} == {"pending"}  # `for:` not over: pending, not firing
        assert majority(TTK)

        # Both faults mended: both alerts resolve (and both /24s are on one upstream again).
        lab_flip(lab, CU)
        subprocess.run(["ip", "-n", border, "route", "del", f"{FAULT_TARGET}/32"], check=True)
        # (The unreachable alert resolves once half the agents hear the target again; wait for all.)
        wait_for(
            lambda: active_are(ONE_UPSTREAM_CU)() and majority(CU) and fleet_up(),
            STEP_TIMEOUT_S,
            lambda: f"not resolved: {p.alerts()}",
        )

        # One agent killed: it stops reporting; started again: it reports.
        second = agents[AGENTS[1]]
        # Its kept id (agent/identity.py) is a label of the alert too.
        kept_id = next(dict(k[1])["id"] for k in second.scrape() if k[0] == "nkprobe_agent_info")
        second.stop(signal.SIGKILL)
        silent = alert(NOT_REPORTING, agent=AGENTS[1], id=kept_id, severity="warning")
        wait_for(active_are(ONE_UPSTREAM_CU, silent), STEP_TIMEOUT_S, lambda: f"not pending: {p.alerts()}")
        second.start()
        wait_for(active_are(ONE_UPSTREAM_CU), STEP_TIMEOUT_S, lambda: f"not resolved: {p.alerts()}")
    finally:
        if prometheus is not None:
            prometheus.stop()
        for agent in agents.values():
            if agent.proc is not None:
                agent.stop()
