"""Fleet operations end to end: three real `nkprobe run` agents probing the lab, Debian's Prometheus with
the shipped rules, Debian's Alertmanager with the shipped routing tree, and a webhook receiver on
loopback that sees every notification.

- Agent a probes from the lab's vantage host; c1 (owner ann@example.org) and c2 (no owner) from a
  second vantage host this test adds behind the same home router (its own namespace, `vp2`).
- vp2's default route is removed: c1 and c2 say their vantage is unhealthy (no_route); the fleet counts
  only a, so the target is not "unreachable from most agents" although two of three agents hear
  nothing (without the health filter the rule's average would be 1/3). NkprobeAgentUnhealthy reaches
  c1's owner and, for c2, the operators, once each, and resolves when the route is back.
- A blackhole route for the target at the lab's border router: every agent stays healthy (its traces
  still get answers from the ISP and the upstream), the target is silent for all, and
  NkprobeTargetUnreachableFromMostAgents reaches the operators once, then resolves.

Every rule expression, label and annotation is the shipped one; the copies here evaluate every second
(`interval: 1s`) and wait `for: 4s` instead of minutes, and Alertmanager groups within seconds
(tests/support/amhelp.py); the minutes are the promtool unit tests' (deploy/central/tests). Nothing is
sent anywhere but loopback and the lab's namespaces.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, agent_config, free_port, scrape_jobs, stop_group
from tests.support.amhelp import Alertmanager, Webhook, alert_labels, config_copy, rules_copy
from tests.support.deployhelp import need_tool
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

TARGET, PREFIX = "198.19.176.10", "198.19.176.0/24"
OWNER = "ann@example.org"
UNHEALTHY, UNREACHABLE = "NkprobeAgentUnhealthy", "NkprobeTargetUnreachableFromMostAgents"
STEP_TIMEOUT_S = 45.0
# The second vantage host: a /30 of the lab's home network (198.18.0.0/24, which the ISP routes to the
# home router) next to the first vantage host's 198.18.0.0/30.
VP2_ADDR, VP2_GATEWAY = "198.18.0.9", "198.18.0.10"


class FleetPrometheus:
    """/usr/bin/prometheus with the rules, scraping each agent every second as the forwarder labels
    it (honor_labels, `agent` = its name), sending alerts to `alertmanager`."""

    def __init__(self, directory: Path, agents: dict[str, Agent], alertmanager: str) -> None:
        self.port = free_port()
        jobs = scrape_jobs(agents)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "rule_files": [str(p) for p in rules_copy(directory)],
            "scrape_configs": jobs,
        }
        path = directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = directory / "prometheus.log"
        cmd = [need_tool("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={directory / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{self.port}"]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(
            lambda: self.query("up") != [], 30, lambda: f"prometheus not up: {self.log.read_text()[-2000:]}"
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                result: list[dict[str, Any]] = json.load(r)["data"]["result"]
        except OSError:
            return []
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def stop(self) -> None:
        stop_group(self.proc)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


@pytest.fixture
def second_vantage(lab: LabInfo) -> Iterator[str]:
    """A second vantage host, `<prefix>vp2`, wired to the lab's home router; removed afterwards (and
    by `lab down` with every namespace of the prefix)."""
    ns, home = f"{lab.prefix}vp2", f"{lab.prefix}home"
    inner, outer = f"{lab.prefix}v2a", f"{lab.prefix}v2b"
    _ip("netns", "del", ns, check=False)
    _ip("-n", home, "link", "del", outer, check=False)
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", home)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{VP2_ADDR}/30", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", home, "addr", "add", f"{VP2_GATEWAY}/30", "dev", outer)
        _ip("-n", home, "link", "set", outer, "up")
        _ip("-n", ns, "route", "add", "default", "via", VP2_GATEWAY)
        yield ns
    finally:
        _ip("netns", "del", ns, check=False)  # takes the veth pair with it


@pytest.fixture
def no_blackhole(lab: LabInfo) -> Iterator[str]:
    border = f"{lab.prefix}border"
    _ip("-n", border, "route", "del", f"{TARGET}/32", check=False)
    try:
        yield border
    finally:
        _ip("-n", border, "route", "del", f"{TARGET}/32", check=False)


def test_unhealthy_agents_are_not_counted_and_each_alert_reaches_its_receiver_once(
    lab: LabInfo, second_vantage: str, no_blackhole: str, tmp_path: Path
) -> None:
    hook = Webhook()
    manager: Alertmanager | None = None
    prometheus: FleetPrometheus | None = None
    agents: dict[str, Agent] = {}
    try:
        manager = Alertmanager(tmp_path, config_copy(tmp_path, hook))
        for name, netns, owner in (("fleet-a", None, ""), ("fleet-c1", second_vantage, OWNER),
                                   ("fleet-c2", second_vantage, "")):  # fmt: skip
            directory = tmp_path / name
            directory.mkdir()
            config = agent_config(
                lab, directory, state_dir=directory / "state", targets=[TARGET], ping_interval_s=0.3,
                trace_interval_s=3.0, name=name, max_pps=100, **({"owner": owner} if owner else {}),
            )  # fmt: skip
            agents[name] = Agent(lab, config, directory / "agent.log", netns=netns).start()
        p = prometheus = FleetPrometheus(tmp_path, agents, f"127.0.0.1:{manager.port}")

        def fleet(agents_up: int) -> bool:
            return (
                p.value(f'target:nkprobe_target_up:agents{{target="{TARGET}"}}') == agents_up
                and p.value(f'target:nkprobe_target_up:avg{{target="{TARGET}"}}') == 1
            )

        wait_for(lambda: fleet(3), STEP_TIMEOUT_S, lambda: f"not all three agents up: {p.query('up')}")
        assert p.value("count(nkprobe_vantage_healthy == 1)") == 3
        info = p.query('nkprobe_agent_info{agent="fleet-c1"}')
        assert info[0]["metric"]["owner"] == OWNER and info[0]["metric"]["id"]

        # vp2 loses its route: c1 and c2 are unhealthy, and only a counts (it still hears the target).
        _ip("-n", second_vantage, "route", "del", "default")
        cut = 'nkprobe_vantage_reason{agent=~"fleet-c.", reason="no_route"} == 1'
        wait_for(lambda: len(p.query(cut)) == 2, STEP_TIMEOUT_S, lambda: f"not unhealthy: {p.query(cut)}")
        wait_for(
            lambda: p.value(f'sum(nkprobe_target_up{{target="{TARGET}"}})') == 1,  # of 3
            STEP_TIMEOUT_S,
            lambda: f"the cut agents still hear the target: {p.query('nkprobe_target_up')}",
        )
        # Without the health filter: 3 agents, 1/3 up, and the outage rule's expression would be true.
        wait_for(lambda: fleet(1), STEP_TIMEOUT_S, "the fleet still counts the cut agents")
        wait_for(
            lambda: len(hook.about(UNHEALTHY)) == 2,
            STEP_TIMEOUT_S,
            lambda: f"not notified: {hook.received()}",
        )
        by_receiver = dict(hook.about(UNHEALTHY))
        owners, operators = by_receiver["/owners"], by_receiver["/operators"]
        assert owners["status"] == operators["status"] == "firing"
        assert owners["groupLabels"] == {"alertname": UNHEALTHY, "owner": OWNER}
        assert list(alert_labels(owners)) == [
            {"alertname": UNHEALTHY, "agent": "fleet-c1", "owner": OWNER, "severity": "warning"}
        ]
        assert list(alert_labels(operators)) == [
            {"alertname": UNHEALTHY, "agent": "fleet-c2", "severity": "warning"}
        ]
        assert "(no_route)" in owners["alerts"][0]["annotations"]["description"]
        # Two of three agents hear nothing, yet the outage alert never fired (nor went pending).
        assert p.query(f'ALERTS{{alertname="{UNREACHABLE}"}}[5m]') == []

        # The route is back: both resolve, each at its receiver.
        _ip("-n", second_vantage, "route", "add", "default", "via", VP2_GATEWAY)
        wait_for(
            lambda: (
                {(path, n["status"]) for path, n in hook.about(UNHEALTHY)[2:]}
                == {("/owners", "resolved"), ("/operators", "resolved")}
            ),
            STEP_TIMEOUT_S,
            lambda: f"not resolved: {hook.about(UNHEALTHY)}",
        )
        wait_for(lambda: fleet(3), STEP_TIMEOUT_S, lambda: f"not all three agents back: {p.query('up')}")

        # The destination goes dark for everyone: all agents healthy, the alert fires, to the operators.
        _ip("-n", no_blackhole, "route", "add", "blackhole", f"{TARGET}/32")
        wait_for(lambda: hook.about(UNREACHABLE), STEP_TIMEOUT_S, lambda: f"no outage: {hook.received()}")
        assert p.value("count(nkprobe_vantage_healthy == 1)") == 3
        ((path, outage),) = hook.about(UNREACHABLE)
        assert path == "/operators" and outage["status"] == "firing"
        assert list(alert_labels(outage)) == [
            {"alertname": UNREACHABLE, "target": TARGET, "prefix": PREFIX, "severity": "warning"}
        ]
        _ip("-n", no_blackhole, "route", "del", f"{TARGET}/32")
        wait_for(
            lambda: len(hook.about(UNREACHABLE)) == 2,
            STEP_TIMEOUT_S,
            lambda: f"not resolved: {hook.received()}",
        )
        assert hook.about(UNREACHABLE)[1][1]["status"] == "resolved"

        # Each alert arrived once and resolved once; nothing else was sent to anyone.
        sent = sorted((path, n["groupLabels"]["alertname"], n["status"]) for path, n in hook.received())
        assert sent == sorted(
            [(r, UNHEALTHY, s) for r in ("/owners", "/operators") for s in ("firing", "resolved")]
            + [("/operators", UNREACHABLE, "firing"), ("/operators", UNREACHABLE, "resolved")]
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
        for agent in agents.values():
            if agent.proc is not None:
                agent.stop()
        if manager is not None:
            manager.stop()
        hook.stop()
