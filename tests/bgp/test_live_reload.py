"""A reload that changes [bgp] (or the destination or the upstream groups) restarts the live view; one
that turns it off closes the stream and leaves nothing running."""

from __future__ import annotations

import asyncio

from agent.agent import Agent
from agent.config import loads_config
from tests.support.ristest import RipestatServer, RisLiveServer


class Scheduler:
    async def reconfigure(self, new: object) -> None:
        pass

    def trigger(self, reason: object, prefix: object = None) -> None:
        pass


def test_reload_turns_the_live_view_off_and_on() -> None:
    with RisLiveServer() as ris, RipestatServer() as stat:
        live = loads_config(f"[bgp]\nris_live_url = '{ris.url}'\nripestat_url = '{stat.url}'\n")
        off = loads_config("[bgp]\nlive = false\n")
        agent = Agent(live)

        async def until(check: object, what: str, timeout: float = 20.0) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not check():  # type: ignore[operator]
                if loop.time() > deadline:
                    state = f"subscriptions {len(ris.subscriptions)}, clients {len(ris.clients)}"
                    raise AssertionError(
                        f"after {timeout} s: {what} ({state}, connections {ris.connections})"
                    )
                await asyncio.sleep(0.01)

        async def main() -> None:
            agent.scheduler = Scheduler()  # type: ignore[assignment]
            agent._start_bgp()
            await until(lambda: ris.subscriptions and agent.live_status() is not None, "never subscribed")
            assert await agent.reload(off)
            assert agent.live_status() is None and agent.bgp_feed is None
            await until(lambda: not ris.clients, "the stream stayed open after live = false")
            before = len(ris.subscriptions)
            assert await agent.reload(live)
            await until(lambda: len(ris.subscriptions) > before, "not subscribed again after live = true")
            status = agent.live_status()
            assert status is not None
            await agent._stop_bgp()

        asyncio.run(main())
