"""agent.identity: the id is made once, kept however the agent is renamed or reinstalled, and a bad
file is a one-line error saying what to do."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from agent.errors import InputError
from agent.exporter import build_registry
from agent.exporter.collector import Identity
from agent.identity import ID_FILE, KeptId, agent_id
from tests.support.sample_results import make_state


def test_made_once_then_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"  # does not exist yet: the first start makes it
    first = agent_id(str(state))
    assert re.fullmatch(r"[0-9a-f-]{36}", first)
    assert agent_id(str(state)) == first
    assert agent_id(str(state), new="other") == first  # never rewritten
    assert (state / ID_FILE).read_text() == first + "\n"
    assert [p.name for p in state.iterdir()] == [ID_FILE]  # no temporary file left behind


def test_bad_or_unwritable_state_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / ID_FILE).write_text("not an id\n")
    with pytest.raises(InputError, match=r"does not hold an agent id .*remove it") as bad:
        agent_id(str(tmp_path))
    assert "\n" not in str(bad.value)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match=r"make agent\.state_dir writable"):
            agent_id(str(locked))


def test_agent_info_carries_owner_and_id() -> None:
    registry = build_registry(make_state(), identity=lambda: Identity(owner="ann@example.org", id="x-1"))
    text = generate_latest(registry).decode()
    assert 'nkprobe_agent_info{agent="lab-1",id="x-1",owner="ann@example.org"} 1.0' in text


def test_a_state_dir_not_usable_yet_gives_an_empty_id_and_a_later_try(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the directory should be")
    now = [0.0]
    kept = KeptId(str(state), retry_s=60.0, clock=lambda: now[0])
    assert kept() == ""
    state.unlink()
    now[0] = 59.0
    assert kept() == ""  # not tried again yet
    assert not state.exists()
    now[0] = 60.0
    made = kept()
    assert made and made == agent_id(str(state)) == kept()
