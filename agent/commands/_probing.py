"""What `nkprobe trace` and `nkprobe ping` share: config, allowlist, engine, the event loop.

Imported only from their `run` functions, so `nkprobe --help` never pays for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent.config import Config, load_config
from agent.net.allowlist import Allowlist
from agent.net.budget import Budget
from agent.net.engine import ProbeEngine, open_engine

T = TypeVar("T")


def config_and_target(config_path: str | None, target: str) -> tuple[Config, str]:
    """The config (the shipped default when no --config: the real 175.45.176.0/22) and the target,
    checked against its destination prefixes before any socket is opened."""
    config = load_config(config_path)
    return config, Allowlist(config.destination.prefixes).check(target)


def run_with_engine(config: Config, body: Callable[[ProbeEngine], Awaitable[T]]) -> T:
    """Open the probe sockets (PrivilegeError without CAP_NET_RAW) and run `body` on a fresh loop.

    The engine gets the allowlist too: even a bug past `config_and_target` cannot send elsewhere."""
    engine = open_engine(Budget(config.agent.max_pps), allow=Allowlist(config.destination.prefixes))

    async def main() -> T:
        async with engine:
            return await body(engine)

    try:
        return asyncio.run(main())
    finally:
        engine.sockets.close()
