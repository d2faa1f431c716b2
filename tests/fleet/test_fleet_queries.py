"""The fleet dashboard's queries give the right answers on fleet data: 20 simulated agents
(bench/fleet/sim.py, each a real prometheus_client registry with the agent's collector) pushed through
vmagent into Debian's VictoriaMetrics on 127.0.0.1, the central recording rules replayed by vmalert, then
the "Fleet agreement" panels of dashboards/nkprobe-fleet.json queried and compared with what the
scenario says. The 1,000-agent timing is bench/fleet/run.py (bench/RESULTS.md, "Fleet")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fleet import sim, vm

REPO = Path(__file__).resolve().parents[2]
FLEET_JSON = REPO / "dashboards" / "nkprobe-fleet.json"
OVERVIEW_JSON = REPO / "dashboards" / "nkprobe-overview.json"
RULES = REPO / "deploy" / "central" / "rules" / "nkprobe.rules.yml"
AGENTS = 20
SPAN_S = 30 * 60.0
STEP_S = 30.0


def _expr(path: Path, title: str) -> str:
    for panel in json.loads(path.read_text())["panels"]:
        if panel.get("title") == title:
            expr: str = panel["targets"][0]["expr"]
            return expr.replace("$prefix", ".*").replace("$agent", ".*")
    raise AssertionError(f"{path.name} has no panel {title!r}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[vm.Service, sim.Scenario]]:
    for name in ("victoria-metrics", "vmagent", "vmalert"):
        # quickstart.sh installs it for the tests; without it this test cannot say anything.
        assert vm.tool(name), f"{name} not found: apt-get install victoria-metrics"
    work = tmp_path_factory.mktemp("fleet")
    central = vm.start_victoria_metrics(work / "vm")
    try:
        forwarder = vm.start_vmagent(work / "vmagent", central.url + "/api/v1/write")
        sc = sim.Scenario.ending_now(AGENTS, SPAN_S)
        rows = 0
        try:
            for i in range(sc.agents):
                fill = sim.Backfill(sc, i)
                body = b"".join(x for t in sim.times(sc, STEP_S) if (x := fill.lines_at(t)) is not None)
                rows += body.count(b"\n")
                vm.push(forwarder, body)
            vm.wait_rows(central, rows, timeout=120)
        finally:
            forwarder.stop()
        vm.replay_rules([RULES], central, sc.start, sc.end, work / "vmalert.log")
        vm.http(central.url + "/internal/force_flush")
        yield central, sc
    finally:
        central.stop()


def test_backfill_is_the_registrys_own_output() -> None:
    sc = sim.Scenario.ending_now(4, 3600.0)
    for i in (0, sim.LONE_AGENT):
        agent, fill = sim.Agent(sc, i), sim.Backfill(sc, i)
        for t in (sc.start, sc.flip_at, sc.end):
            text = fill.lines_at(t)
            assert text is not None
            stamp = f" {int(t * 1000)}"
            ours = [line.removesuffix(stamp).rsplit(" ", 1) for line in text.decode().splitlines()]
            theirs = [line.decode().rsplit(" ", 1) for line in agent.labelled(t)]
            assert [k for k, _ in ours] == [k for k, _ in theirs]
            assert [float(v) for _, v in ours] == pytest.approx([float(v) for _, v in theirs], nan_ok=True)
    # Bounded: a fixed number of series per agent, whatever it sees.
    assert sim.Backfill(sc, 0).series == sim.Backfill(sc, sim.LONE_AGENT).series < 800


def test_upstream_share_per_slash24(fleet: tuple[vm.Service, sim.Scenario]) -> None:
    central, sc = fleet
    got = {
        (r["metric"]["prefix"], r["metric"]["upstream"]): float(r["value"][1])
        for r in vm.query(central, _expr(FLEET_JSON, "Upstream share per /24 (agents)"), sc.end)
    }
    want = sim.expected_share(sc, sc.end)
    assert set(got) == set(want)
    assert got == pytest.approx(want)
    # The recording rule behind the overview's table agrees (every agent has 2 targets per /24, one tag).
    recorded = {
        (r["metric"]["prefix"], r["metric"]["upstream"]): float(r["value"][1])
        for r in vm.query(central, _expr(OVERVIEW_JSON, "Upstream per /24 (fleet)"), sc.end)
        if float(r["value"][1]) > 0  # the rule also keeps the upstreams nobody sees, at 0
    }
    assert recorded == pytest.approx(want)
    assert want[("175.45.179.0/24", "transtelecom")] == pytest.approx(1.0)  # the flip, seen by all


def _triples(central: vm.Service, expr: str, t: float) -> set[tuple[str, str, str]]:
    return {
        (r["metric"]["agent"], r["metric"]["prefix"], r["metric"]["upstream"])
        for r in vm.query(central, expr, t)
    }


def test_agents_disagreeing_with_the_majority(fleet: tuple[vm.Service, sim.Scenario]) -> None:
    central, sc = fleet
    got = _triples(central, _expr(FLEET_JSON, "Agents disagreeing with the majority"), sc.end)
    want = sim.expected_disagreeing(sc, sc.end)
    assert (sim.agent_name(sim.LONE_AGENT), "175.45.176.0/24", "transtelecom") in want
    assert got == want


def test_paths_seen_by_one_vantage_only(fleet: tuple[vm.Service, sim.Scenario]) -> None:
    central, sc = fleet
    got = _triples(central, _expr(FLEET_JSON, "Paths seen by one vantage only"), sc.end)
    assert (
        got
        == sim.expected_lone(sc, sc.end)
        == {(sim.agent_name(sim.LONE_AGENT), "175.45.176.0/24", "transtelecom")}
    )


def test_agents_silent_for_more_than_n_minutes(fleet: tuple[vm.Service, sim.Scenario]) -> None:
    central, sc = fleet
    expr = _expr(FLEET_JSON, "Agents silent for more than 10 minutes")
    got = {r["metric"]["agent"] for r in vm.query(central, expr, sc.end)}
    assert got == sim.expected_silent(sc) == {sim.agent_name(19)}
    # Five minutes into its silence it is not silent "for more than 10 minutes" yet.
    assert vm.query(central, expr, sc.end - sc.silent_for + 300) == []
