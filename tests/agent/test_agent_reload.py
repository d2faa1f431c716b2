"""Agent.reload(config): the whole new config, or the old one kept whole. No sockets are opened."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from agent.agent import Agent
from agent.config import load_config, loads_config

GOOD = '[agent]\nname = "vp-2"\nmax_pps = 7\n[destination]\nprefixes = ["198.19.177.0/24"]\n'
GOOD += '[[targets]]\naddress = "198.19.177.10"\n'


def test_a_valid_config_is_applied_whole() -> None:
    agent = Agent(load_config(None))
    new = loads_config(GOOD)
    assert asyncio.run(agent.reload(new)) is True
    snap = agent.results.snapshot()
    assert agent.config is new
    assert snap.agent_name == "vp-2" and [t.target.address for t in snap.targets] == ["198.19.177.10"]
    assert snap.reloads["success"] == 1 and snap.faults["config"] is False


def test_a_config_that_cannot_be_applied_keeps_the_old_one_whole(tmp_path: Path) -> None:
    old = load_config(None)
    agent = Agent(old)
    tagger = agent.tagger
    broken = tmp_path / "bgp.json"
    broken.write_text("{")  # valid TOML pointing at an unreadable BGP snapshot: fails only when applied
    new = dataclasses.replace(loads_config(GOOD), bgp=dataclasses.replace(old.bgp, snapshot=(str(broken),)))
    assert asyncio.run(agent.reload(new)) is False
    snap = agent.results.snapshot()
    assert agent.config is old
    assert agent.tagger is tagger  # its AS table, settings and BGP check
    assert snap.agent_name == old.agent.name and len(snap.targets) == len(old.targets)
    assert snap.reloads["failure"] == 1 and snap.faults["config"] is True


def test_an_unreadable_file_keeps_the_old_config(tmp_path: Path) -> None:
    agent = Agent(load_config(None))
    assert asyncio.run(agent.reload_file(str(tmp_path / "missing.toml"))) is False
    assert agent.results.snapshot().reloads == {"success": 0, "failure": 1}
