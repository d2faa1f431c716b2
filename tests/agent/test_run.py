"""The Agent (agent.agent) as `nkprobe run` starts it: what it hands to the engine, and what a reload
changes. No sockets are opened."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent import agent as agent_module
from agent.agent import Agent, build_results
from agent.config import load_config


def test_the_agent_engine_carries_the_allowlist_and_counts_send_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    def fake_open_engine(budget: object, netns: object = None, **kwargs: object) -> object:
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(agent_module, "open_engine", fake_open_engine)
    config = load_config(None)
    state = build_results(config)
    # The engine is the first thing `run` builds: nothing after it is reached.
    main = Agent(config, results=state).run(None, threading.Event(), handle_signals=False)
    with pytest.raises(RuntimeError, match="stop here"):
        asyncio.run(main)
    allow = seen["allow"]
    assert allow.allows("175.45.176.71") and not allow.allows("198.19.176.10")  # type: ignore[attr-defined]
    on_send_error = seen["on_send_error"]
    on_send_error("EPERM")  # type: ignore[operator]
    on_send_error("ENETUNREACH")  # type: ignore[operator]
    assert state.snapshot().errors["send"] == 2


def test_a_reload_reconfigures_the_state_as_start_up_built_it() -> None:
    import dataclasses

    config = load_config(None)
    agent = Agent(config)
    renamed = dataclasses.replace(config, agent=dataclasses.replace(config.agent, name="vp-2"))
    assert asyncio.run(agent.reload(renamed))
    assert agent.config is renamed
    assert agent.results.snapshot().agent_name == "vp-2"
    assert agent.results.snapshot().agent_name == build_results(renamed).snapshot().agent_name


def test_a_reload_moves_the_engines_allowlist_before_the_targets(tmp_path: object) -> None:
    # Narrowing [destination] prefixes on SIGHUP stops probes outside them at once, and widening admits
    # the new targets without a restart; the scheduler is reconfigured after the engine has the new list.
    from pathlib import Path

    from agent.errors import NotAllowedError
    from agent.net.allowlist import Allowlist
    from tests.support.fakewire import fake_engine

    config_file = Path(str(tmp_path)) / "nkprobe.toml"
    config_file.write_text(
        '[destination]\nprefixes = ["198.19.177.0/24"]\n\n[[targets]]\naddress = "198.19.177.10"\n'
    )
    config = load_config(None)
    agent = Agent(config)
    state = agent.results
    engine, _ = fake_engine(allow=Allowlist(config.destination.prefixes))
    seen_at_reconfigure: list[bool] = []

    class Scheduler:
        async def reconfigure(self, new: object) -> None:
            seen_at_reconfigure.append(engine.allow is not None and engine.allow.allows("198.19.177.10"))

    async def main() -> None:
        assert engine.try_send(b"x" * 28, "175.45.176.71", "icmp") is not None
        agent.engine, agent.scheduler = engine, Scheduler()  # type: ignore[assignment]
        assert await agent.reload_file(str(config_file))
        assert engine.try_send(b"x" * 28, "198.19.177.10", "icmp") is not None
        with pytest.raises(NotAllowedError):
            engine.try_send(b"x" * 28, "175.45.176.71", "icmp")  # admitted before, refused now

    asyncio.run(main())
    assert seen_at_reconfigure == [True]
    assert state.snapshot().agent_name == load_config(str(config_file)).agent.name
