"""The composition root (agent.commands.run): what it hands to the engine. No sockets are opened."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.commands import run as run_module
from agent.config import load_config
from agent.net import engine as engine_module


def test_the_agent_engine_carries_the_allowlist_and_counts_send_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    def fake_open_engine(budget: object, netns: object = None, **kwargs: object) -> object:
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(engine_module, "open_engine", fake_open_engine)
    config = load_config(None)
    state = run_module._build_state(config)
    main = run_module._main(
        config,
        state,
        None,  # type: ignore[arg-type]  # not reached: the engine is the first thing built
        None,
        threading.Event(),
        config_path=None,
        handle_signals=False,
        early_reload=threading.Event(),
        on_ready=None,
    )
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
    state = run_module._build_state(config)
    renamed = dataclasses.replace(config, agent=dataclasses.replace(config.agent, name="vp-2"))
    run_module._reconfigure_state(state, renamed)
    assert state.snapshot().agent_name == "vp-2"
