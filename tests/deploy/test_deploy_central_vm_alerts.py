"""The VictoriaMetrics stack's alerting: Debian's vmalert evaluating the shipped rules over a simulated
fleet in Debian's VictoriaMetrics and notifying Debian's Alertmanager with the shipped routing tree; a
webhook receiver on loopback sees each notification.

Twelve agents of the fleet simulator (bench/fleet/sim.py: each a real registry with the agent's own
collectors, here with its vantage verdict and identity too) are pushed live, once a second:
- four lose their route (two belong to ann@example.org): their vantage is unhealthy and their targets
  silent. The fleet does not count them (no outage alert); NkprobeAgentUnhealthy reaches the owner in
  one notification for her two agents and the operators in one for the other two;
- then every agent is healthy again and all eight targets go silent for everyone: one notification to
  the operators lists the eight targets (grouped by alert name), and it resolves.

Rules as shipped but evaluated every second with `for:` of seconds (amhelp.rules_copy), Alertmanager's
timers in seconds (amhelp.config_copy). Loopback only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.exporter.collector import Identity, SnapshotCollector
from agent.exporter.vantage import VantageCollector
from agent.vantage import VantageHealth
from bench.fleet import sim, vm
from tests.support.amhelp import Alertmanager, Webhook, alert_labels, config_copy, rules_copy
from tests.support.deployhelp import need_tool
from tests.support.waiting import wait_for

AGENTS = 12
CUT = (0, 1, 2, 3)  # agents whose route goes
OWNED = (0, 1)  # ann's
OWNER = "ann@example.org"
UNHEALTHY, UNREACHABLE = "NkprobeAgentUnhealthy", "NkprobeTargetUnreachableFromMostAgents"
STEP_TIMEOUT_S = 60.0


class FleetAgent(sim.Agent):
    """A simulated agent whose route and targets the test switches."""

    def __init__(self, sc: sim.Scenario, i: int) -> None:
        super().__init__(sc, i)
        self.vantage = VantageHealth(answer_window_s=10.0, trace_window_s=150.0)
        self.vantage.egress(route=True, link_up=True)
        self.targets_up = True
        owner = OWNER if i in OWNED else ""
        self.registry = CollectorRegistry()
        self.registry.register(
            SnapshotCollector(lambda: self._snap, identity=lambda: Identity(owner=owner, id=f"id-{i}"))
        )
        self.registry.register(VantageCollector(self.vantage))

    def exposition(self, t: float) -> bytes:
        snap = sim.snapshot(self.sc, self.i, t)
        if not self.targets_up:
            snap = replace(snap, targets=tuple(replace(x, up=False) for x in snap.targets))
        self._snap = snap
        return generate_latest(self.registry)

    def cut(self, cut: bool) -> None:
        self.vantage.egress(route=not cut, link_up=not cut)
        self.targets_up = not cut


class Pusher:
    """Pushes every agent's samples, stamped now, into VictoriaMetrics once a second until stopped."""

    def __init__(self, central: vm.Service, agents: list[FleetAgent]) -> None:
        self.central, self.agents = central, agents
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time

        try:
            while not self._stop.is_set():
                now = time.time()
                body = b"".join(a.samples_at(now) for a in self.agents)
                vm.http(self.central.url + "/api/v1/import/prometheus", body)
                self._stop.wait(1.0)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[list[FleetAgent], Webhook]]:
    for name in ("victoria-metrics", "vmalert", "prometheus-alertmanager"):
        need_tool(name)
    hook = Webhook()
    services: list[vm.Service] = []
    manager = pusher = None
    try:
        manager = Alertmanager(tmp_path, config_copy(tmp_path, hook))
        central = vm.start_victoria_metrics(tmp_path / "vm")
        services.append(central)
        sc = sim.Scenario.ending_now(AGENTS, 3600.0)
        agents = [FleetAgent(sc, i) for i in range(AGENTS)]
        pusher = Pusher(central, agents)
        port = vm.free_port()
        rules = rules_copy(tmp_path)
        alerter = vm.Service(
            "vmalert",
            [need_tool("vmalert"), *(f"-rule={r}" for r in rules), f"-datasource.url={central.url}",
             f"-remoteWrite.url={central.url}", f"-notifier.url={manager.url}", "-evaluationInterval=1s",
             f"-httpListenAddr=127.0.0.1:{port}"],
            port,
            tmp_path / "vmalert.log",
        )  # fmt: skip
        services.append(alerter)
        alerter.wait_healthy()
        yield agents, hook
        assert pusher.error is None, pusher.error
    finally:
        if pusher is not None:
            pusher.stop()
        for service in reversed(services):
            service.stop()
        if manager is not None:
            manager.stop()
        hook.stop()


def test_vmalert_notifies_through_alertmanager_counting_only_healthy_agents(
    stack: tuple[list[FleetAgent], Webhook],
) -> None:
    agents, hook = stack
    for i in CUT:
        agents[i].cut(True)
    wait_for(
        lambda: len(hook.about(UNHEALTHY)) == 2, STEP_TIMEOUT_S, lambda: f"not notified: {hook.received()}"
    )
    notes = dict(hook.about(UNHEALTHY))
    assert notes["/owners"]["groupLabels"] == {"alertname": UNHEALTHY, "owner": OWNER}
    assert sorted(a["agent"] for a in alert_labels(notes["/owners"])) == [sim.agent_name(i) for i in OWNED]
    assert sorted(a["agent"] for a in alert_labels(notes["/operators"])) == [
        sim.agent_name(i) for i in CUT if i not in OWNED
    ]
    # A third of the fleet hears nothing, but it is the cut third: no outage.
    assert hook.about(UNREACHABLE) == []

    for i in CUT:
        agents[i].cut(False)
    for agent in agents:
        agent.targets_up = False
    wait_for(lambda: hook.about(UNREACHABLE), STEP_TIMEOUT_S, lambda: f"no outage: {hook.received()}")
    ((path, outage),) = hook.about(UNREACHABLE)
    assert path == "/operators" and outage["status"] == "firing"
    assert sorted(a["target"] for a in alert_labels(outage)) == sorted(t.address for t in sim.TARGETS)
    wait_for(
        lambda: (
            {(p, n["status"]) for p, n in hook.about(UNHEALTHY)[2:]}
            == {("/owners", "resolved"), ("/operators", "resolved")}
        ),
        STEP_TIMEOUT_S,
        lambda: f"unhealthy not resolved: {hook.about(UNHEALTHY)}",
    )

    for agent in agents:
        agent.targets_up = True
    wait_for(
        lambda: len(hook.about(UNREACHABLE)) == 2, STEP_TIMEOUT_S, lambda: f"not resolved: {hook.received()}"
    )
    assert hook.about(UNREACHABLE)[1][1]["status"] == "resolved"
    assert len(hook.about(UNHEALTHY)) == 4  # each group once firing, once resolved
