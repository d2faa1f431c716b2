"""`nkprobe run` in the lab through faults of the volunteer's own network and disk.

The vantage host loses its link, then its default route; the state directory fills up. Each time the agent
keeps serving metrics, shows the fault (targets down, egress interface gone, the history fault gauge), and
recovers by itself once the fault is mended, with its committed history intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, agent_config, history, lab_flip, wait_for

pytestmark = pytest.mark.lab

TARGET, TARGET_PREFIX = "198.19.176.10", "198.19.176.0/24"
FLIP_TARGETS, FLIP_PREFIX = ("198.19.179.10", "198.19.179.20"), "198.19.179.0/24"


def ip(lab: LabInfo, *args: str) -> str:
    """`ip` inside the lab's vantage namespace: these tests never touch the root namespace's network."""
    proc = subprocess.run(["ip", "-n", lab.vantage_ns, *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, f"ip -n {lab.vantage_ns} {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def default_route(lab: LabInfo) -> tuple[str, str]:
    routes = json.loads(ip(lab, "-j", "route", "show", "default"))
    assert routes, "the lab's vantage host has no default route"
    return str(routes[0]["gateway"]), str(routes[0]["dev"])


@pytest.fixture
def vantage_restored(lab: LabInfo) -> Iterator[tuple[str, str]]:
    """The vantage host's default route; whatever a test breaks, link and route are back afterwards."""
    gateway, dev = default_route(lab)
    try:
        yield gateway, dev
    finally:
        ip(lab, "link", "set", "dev", dev, "up")
        ip(lab, "route", "replace", "default", "via", gateway, "dev", dev)


def target_up(agent: Agent) -> float:
    return agent.value("nkprobe_target_up", target=TARGET, prefix=TARGET_PREFIX)


def egress(agent: Agent) -> str:
    interfaces = [
        dict(labels)["interface"] for (name, labels) in agent.scrape() if name == "nkprobe_egress_info"
    ]
    assert len(interfaces) == 1, interfaces
    return interfaces[0]


def local_network_triggers(agent: Agent) -> float:
    return agent.value("nkprobe_retrace_triggers_total", reason="local_network")


@pytest.mark.parametrize("fault", ["link", "route"])
def test_vantage_link_or_default_route_lost_then_restored(
    lab: LabInfo, tmp_path: Path, vantage_restored: tuple[str, str], fault: str
) -> None:
    gateway, dev = vantage_restored
    config = agent_config(
        lab, tmp_path, state_dir=tmp_path / "state", targets=[TARGET], ping_interval_s=0.3, max_pps=100
    )
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: target_up(agent) == 1.0, 20, f"target never up: {agent.log()}")
        wait_for(lambda: egress(agent) == dev, 10, f"egress interface not {dev}: {agent.log()}")
        triggers_before = local_network_triggers(agent)

        if fault == "link":
            ip(lab, "link", "set", "dev", dev, "down")  # the kernel drops the routes through it too
        else:
            ip(lab, "route", "del", "default")
        wait_for(lambda: target_up(agent) == 0.0, 20, f"target still up without {fault}: {agent.log()}")
        assert egress(agent) == "", "the egress interface must go when the default route goes"
        # The agent judges its own vantage unfit (agent/vantage.py); a link going down takes its
        # routes with it, so both faults read as no route.
        assert agent.value("nkprobe_vantage_healthy") == 0.0
        assert agent.value("nkprobe_vantage_reason", reason="no_route") == 1.0
        assert agent.proc is not None and agent.proc.poll() is None  # still serving, as just scraped

        ip(lab, "link", "set", "dev", dev, "up")
        ip(lab, "route", "replace", "default", "via", gateway, "dev", dev)
        wait_for(lambda: target_up(agent) == 1.0, 30, f"target not back after the {fault}: {agent.log()}")
        wait_for(lambda: egress(agent) == dev, 10, f"egress interface not back: {agent.log()}")
        wait_for(lambda: agent.value("nkprobe_vantage_healthy") == 1.0, 10, "vantage not healthy again")
        assert agent.value("nkprobe_vantage_reason", reason="ok") == 1.0
        # The agent noticed its own network change (and re-traced), not only the lost answers.
        assert local_network_triggers(agent) > triggers_before
    finally:
        assert agent.stop() == 0


def fill(directory: Path) -> Path:
    """Write into `directory` until the file system is full; the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def fault(agent: Agent, kind: str) -> float:
    return agent.value("nkprobe_fault", kind=kind)


def tag(agent: Agent, target: str, upstream: str) -> float:
    return agent.value("nkprobe_path_upstream", target=target, prefix=FLIP_PREFIX, upstream=upstream)


def test_full_disk_is_a_fault_that_loses_no_change(lab: LabInfo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "nkprobe-test", str(state)], check=True)
    lab_flip(lab, "china_unicom")
    config = agent_config(
        lab, tmp_path, state_dir=state, targets=FLIP_TARGETS, ping_interval_s=0.3, max_pps=200
    )
    agent = Agent(lab, config, tmp_path / "agent.log")
    try:
        agent.start()
        for t in FLIP_TARGETS:
            wait_for(lambda t=t: tag(agent, t, "china_unicom") == 1.0, 30, f"{t} never on china_unicom")
        filler = fill(state)

        lab_flip(lab, "transtelecom")
        for t in FLIP_TARGETS:
            wait_for(lambda t=t: tag(agent, t, "transtelecom") == 1.0, 30, f"{t} flip not seen")
        wait_for(lambda: fault(agent, "history") == 1.0, 20, f"no history fault, full disk: {agent.log()}")
        assert agent.scrape()  # metrics still served

        filler.unlink()
        wait_for(lambda: fault(agent, "history") == 0.0, 30, f"history fault did not clear: {agent.log()}")
        rows = [r for r in history(config) if r.get("prefix") == FLIP_PREFIX]
        assert sorted(r["target"] for r in rows) == sorted(FLIP_TARGETS), rows
        assert all(r["new"] == "transtelecom" for r in rows), rows
        assert agent.stop() == 0
        with contextlib.closing(sqlite3.connect(state / "history.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        agent.stop()
        lab_flip(lab, "china_unicom")
        subprocess.run(["umount", "-l", str(state)], check=False)
