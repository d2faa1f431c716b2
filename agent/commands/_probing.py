"""What `nkprobe trace` and `nkprobe ping` share: config, allowlist, engine, the event loop.

Imported only from their `run` functions, so `nkprobe --help` never pays for it. The engine (and asyncio
with it, a fifth of a trace's start-up) is imported by `run_with_engine`, not here: `config_and_target`
is done first, so that `nkprobe trace` can start its resolver check while the engine's modules load.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from agent.config import Config, load_config
from agent.net.allowlist import Allowlist

if TYPE_CHECKING:
    from agent.net.engine import ProbeEngine

T = TypeVar("T")


def config_and_target(config_path: str | None, target: str) -> tuple[Config, str]:
    """The config (the shipped default when no --config: the real 175.45.176.0/22) and the target,
    checked against its destination prefixes before any socket is opened."""
    config = load_config(config_path)
    return config, Allowlist(config.destination.prefixes).check(target)


def import_asyncio_without_ssl() -> None:
    """Import asyncio (for the engine) without the ssl module, in a process that has neither yet.

    asyncio.base_events, selector_events and sslproto import ssl inside `try: ... except ImportError`
    and, without it, refuse only TLS transports ("Python ssl module is not available"); a command that
    probes opens none. ssl with its C module is a third of asyncio's import, 4.5 ms of `nkprobe trace`'s
    start-up (bench/startup.py). A None in sys.modules makes that import raise ImportError (the import
    system's documented way to block a module); it is taken out again at once, so a later `import ssl`
    of this process works as usual. A process that loaded either module before is left alone: its
    asyncio keeps TLS.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def run_with_engine(config: Config, body: Callable[[ProbeEngine], Awaitable[T]]) -> T:
    """Open the probe sockets (PrivilegeError without CAP_NET_RAW) and run `body` on a fresh loop.

    The engine gets the allowlist too: even a bug past `config_and_target` cannot send elsewhere."""
    import_asyncio_without_ssl()
    import asyncio

    from agent.net.budget import Budget
    from agent.net.engine import open_engine

    engine = open_engine(Budget(config.agent.max_pps), allow=Allowlist(config.destination.prefixes))

    async def main() -> T:
        async with engine:
            return await body(engine)

    try:
        return asyncio.run(main())
    finally:
        engine.sockets.close()
