"""The real `nkprobe run` in the namespace lab with its live BGP view pointed at local RIS Live and
RIPEstat servers (tests/support/ristest.py): the lab's flip of 198.19.179.0/24 to the TTK-like chain plus
a replayed RIS Live change of that /24 to AS20485. The BGP change re-traces the /24 at once, and after
both, the overview dashboard's own queries (dashboards/generate.py BGP_QUERIES), run by Debian's real
Prometheus, give the same upstream for the /24 from BGP and from the traces."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, Prometheus, agent_config, lab_flip, wait_for
from tests.support.ristest import PEERS, RipestatServer, RisLiveServer, lab_ripestat, update

pytestmark = pytest.mark.lab

CU_ASN, TTK_ASN, DEST_ASN = 4837, 20485, 131279
FLIP_PREFIX, CU_PREFIX, TTK_PREFIX = "198.19.179.0/24", "198.19.176.0/24", "198.19.177.0/24"
TARGETS = ("198.19.176.10", "198.19.177.10", "198.19.179.10")
DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def _queries() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("nkprobe_dashboards_generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queries: dict[str, str] = module.BGP_QUERIES
    return queries


def _shares(prom: Prometheus, expr: str) -> dict[str, float]:
    return {r["metric"]["upstream"]: float(r["value"][1]) for r in prom.query(expr)}


def _leader(shares: dict[str, float]) -> str | None:
    """The upstream with the largest share, if it has more than half."""
    best = max(shares, key=lambda k: shares[k], default=None)
    return best if best is not None and shares[best] > 0.5 else None


def test_a_flip_and_its_bgp_change_agree_on_the_dashboard(lab: LabInfo, tmp_path: Path) -> None:
    queries = _queries()
    sel = 'agent=~".*", prefix=~"{prefix}"'  # what Grafana puts for All agents and one /24

    def agree(prefix: str, upstream: str) -> bool:
        bgp = _shares(prom, queries["bgp_share"].format(sel=sel.format(prefix=prefix)))
        traced = _shares(prom, queries["traced_share"].format(sel=sel.format(prefix=prefix)))
        seen["bgp"], seen["traced"] = bgp, traced
        return _leader(bgp) == _leader(traced) == upstream

    seen: dict[str, Any] = {}
    lab_flip(lab, "china_unicom")  # the lab's starting state, whatever an earlier test left
    with RisLiveServer() as ris, RipestatServer(lab_ripestat(CU_ASN)) as stat:
        config = agent_config(
            lab, tmp_path, state_dir=tmp_path / "state", targets=TARGETS, trace_interval_s=60.0, max_pps=200
        )
        live = f'[bgp]\nlive = true\nris_live_url = "{ris.url}"\nripestat_url = "{stat.url}"\n'
        config.write_text(config.read_text().replace("[bgp]\nlive = false\n", live, 1))
        agent = Agent(lab, config, tmp_path / "agent.log").start()
        prom = Prometheus(tmp_path, f"127.0.0.1:{agent.port}")
        try:
            wait_for(
                lambda: ris.subscriptions and stat.refreshes() == 1, 20, "the agent's live view never started"
            )
            assert agent.value("nkprobe_bgp_stream_up") == 1.0 and agent.value("nkprobe_bgp_stale") == 0.0
            for prefix, upstream in ((FLIP_PREFIX, "china_unicom"), (TTK_PREFIX, "transtelecom")):
                wait_for(lambda p=prefix, u=upstream: agree(p, u), 60, lambda: f"no agreement before: {seen}")
            # The data plane flips, then BGP says so: the BGP change re-traces the /24 at once (its next
            # periodic round is up to a minute away) and both shares move to TTK.
            lab_flip(lab, "transtelecom")
            replayed = time.monotonic()
            for peer in PEERS[:2]:
                ris.send(update(peer, (peer[2], TTK_ASN, DEST_ASN), announce=[FLIP_PREFIX]))
            flip = {"target": "198.19.179.10", "prefix": FLIP_PREFIX, "upstream": "transtelecom"}
            wait_for(lambda: agent.value("nkprobe_path_upstream_ratio", **flip) == 1.0, 15, agent.log)
            traced_after = time.monotonic() - replayed
            assert agent.value("nkprobe_retrace_triggers_total", reason="bgp") >= 1.0
            assert f"-> transtelecom, tracing {FLIP_PREFIX} now" in agent.log()  # the reason, in the log
            wait_for(lambda: agree(FLIP_PREFIX, "transtelecom"), 30, lambda: f"no agreement after: {seen}")
            assert agree(TTK_PREFIX, "transtelecom") and agree(CU_PREFIX, "china_unicom")
            print(f"\nlab: replayed BGP change -> traced share on /metrics in {traced_after:.2f} s")
            assert traced_after < 10  # a periodic round would take up to 60 s
        finally:
            prom.stop()
            assert agent.stop() == 0, agent.log()
            lab_flip(lab, "china_unicom")
