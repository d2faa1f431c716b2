"""The live BGP view's I/O (agent.bgp.feed) against local servers (tests/support/ristest.py): a RIS Live
WebSocket server replaying the hand-written 2017-10-01 sequence with injected faults (drop, stall,
refusal, garbage), and a RIPEstat server answering in the documented envelope, or not. Everything
listens on 127.0.0.1; nothing connects to RIPE."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.bgp.feed import LiveFeed
from agent.bgp.live import Change, LiveView
from agent.config import DEFAULT_UPSTREAMS
from tests.support.ristest import DEST_ASN, SLASH24S, RipestatServer, RisLiveServer, sequence_2017

P176, P177, P178, P179 = SLASH24S
REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-websockets (bookworm: 10.4)


@pytest.fixture
def servers() -> Iterator[tuple[RisLiveServer, RipestatServer]]:
    with RisLiveServer() as ris, RipestatServer() as stat:
        yield ris, stat


def _feed(ris: RisLiveServer, stat: RipestatServer, changes: list[Change], **kw: float) -> LiveFeed:
    return LiveFeed(
        LiveView(DEST_ASN, ["175.45.176.0/22"], DEFAULT_UPSTREAMS),
        prefixes=("175.45.176.0/22",),
        ris_live_url=ris.url,
        ripestat_url=stat.url,
        refresh_s=kw.get("refresh_s", 3600.0),
        stall_s=kw.get("stall_s", 30.0),
        on_change=changes.append,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
    )


async def until(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Bounded wait on the loop the feed runs on (never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"after {timeout} s: {what}")
        await asyncio.sleep(0.01)


def _run(feed: LiveFeed, body: Callable[[], object]) -> None:
    async def main() -> None:
        task = asyncio.create_task(feed.run())
        try:
            await body()  # type: ignore[misc]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_the_feed_subscribes_refreshes_and_follows_the_2017_sequence(
    servers: tuple[RisLiveServer, RipestatServer],
) -> None:
    ris, stat = servers
    changes: list[Change] = []
    feed = _feed(ris, stat, changes)

    async def body() -> None:
        await until(lambda: feed.status().stream_up and not feed.status().stale, "never up and fresh")
        assert ris.subscriptions == [
            {"prefix": "175.45.176.0/22", "moreSpecific": True, "lessSpecific": True, "type": "UPDATE"}
        ]
        assert ris.paths == ["/v1/ws/?client=nkprobe"]  # RIS Live's manual asks clients to name themselves
        assert stat.refreshes() == 1 and changes == []  # the baseline is no change
        for message in sequence_2017():
            ris.send(message)
        await until(lambda: feed.status().messages["applied"] == 4, "the four updates not applied")

    _run(feed, body)
    assert [(c.prefix, sorted(c.new)) for c in changes] == [
        (P176, ["china_unicom", "transtelecom"]),
        (P178, ["china_unicom", "transtelecom"]),
        (P179, ["china_unicom", "transtelecom"]),
        (P176, ["china_unicom"]),
        (P179, ["china_unicom"]),
    ]
    status = feed.status()
    assert status.messages == {"applied": 4, "ignored": 3, "outside": 0, "malformed": 0, "error": 0}
    assert status.in_bgp(P178, "transtelecom") and not status.in_bgp(P179, "transtelecom")


def test_drop_stall_refusal_and_garbage_reconnect_resubscribe_and_refresh(
    servers: tuple[RisLiveServer, RipestatServer],
) -> None:
    ris, stat = servers
    changes: list[Change] = []
    feed = _feed(ris, stat, changes, stall_s=0.6)

    async def body() -> None:
        await until(lambda: feed.status().stream_up and stat.refreshes() == 1, "never up")
        # Garbage is counted and skipped; the stream stays up.
        ris.send("{not json")
        ris.send({"type": "ris_message", "data": {"type": "UPDATE", "path": "no"}})
        await until(lambda: feed.status().messages["malformed"] == 2, "garbage not counted")
        assert feed.status().stream_up
        # A dropped connection: stale at once, then back with a new subscription and a refresh.
        ris.drop()
        await until(
            lambda: len(ris.subscriptions) == 2 and stat.refreshes() == 2, "no resubscribe after a drop"
        )
        await until(lambda: not feed.status().stale, "still stale after reconnecting")
        # A stall (even pings go unanswered): noticed after stall_s, and reconnected.
        ris.stall = True
        await until(lambda: not feed.status().stream_up, "a stall was not noticed", timeout=5)
        assert feed.status().stale
        ris.stall = False
        await until(
            lambda: len(ris.subscriptions) == 3 and feed.status().stream_up, "no reconnect after a stall"
        )
        assert ris.pings > 0  # the feed's keepalive is RIS Live's JSON ping
        # Refused handshakes (HTTP 503) are retried with backoff until one is accepted.
        ris.refuse = 2
        ris.drop()
        await until(lambda: ris.refused == 2 and len(ris.subscriptions) == 4, "refusals not retried")
        await until(lambda: stat.refreshes() == 4 and not feed.status().stale, "no refresh after refusals")

    _run(feed, body)
    assert changes == []  # nothing moved: faults alone never look like routing changes


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("garbage", "not JSON"),
        ("envelope", 'no "data" object'),
        ("http500", "HTTP 500"),
        ("version", "looking-glass version '9.0' is not one nkprobe reads"),
        ("outside", "route for 193.0.0.0/21 is outside the destination 175.45.176.0/22"),
    ],
)
def test_a_bad_ripestat_answer_keeps_the_last_view_marked_stale(
    servers: tuple[RisLiveServer, RipestatServer], fault: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    ris, stat = servers
    changes: list[Change] = []
    feed = _feed(ris, stat, changes)

    async def body() -> None:
        assert await feed.refresh()
        good = feed.view.prefixes
        if fault == "version":
            stat.data.versions["looking-glass"] = "9.0"
        elif fault == "outside":
            stat.data.routes = {("rrc00", "193.0.0.56"): {"193.0.0.0/21": "3333"}}
        else:
            stat.data.fault = fault
        assert not await feed.refresh()
        assert feed.view.prefixes == good
        status = feed.status()
        assert status.stale and status.refreshes == {"ok": 1, "failed": 1}

    asyncio.run(body())
    lines = [r.getMessage() for r in caplog.records if "BGP refresh from RIPEstat failed" in r.getMessage()]
    assert len(lines) == 1 and message in lines[0] and "\n" not in lines[0]


def test_live_off_imports_no_websockets_and_starts_nothing() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from agent.agent import Agent
        from agent.config import loads_config
        agent = Agent(loads_config('[bgp]\\nlive = false\\n'))
        async def main():
            agent._start_bgp()
        asyncio.run(main())
        assert agent.live_status() is None
        bad = [m for m in sys.modules if m.startswith(("websockets", "agent.bgp.feed", "urllib.request"))]
        print(bad)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bookworms_websockets_10_4_speaks_through_the_same_compat_layer(
    servers: tuple[RisLiveServer, RipestatServer],
) -> None:
    """Debian bookworm's python3-websockets 10.4 (the legacy API) against the same server the 13+ API
    is tested with above: connect, subscribe, receive and apply one update."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.fail(f"{SYSTEM_PYTHON} is missing (quickstart.sh installs python3 and python3-websockets)")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import websockets; print(websockets.__version__)"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        pytest.fail("Debian's python3-websockets is not installed: apt install python3-websockets")
    ris, stat = servers
    script = textwrap.dedent(
        f"""
        import asyncio
        from agent.bgp import wscompat
        from agent.bgp.feed import LiveFeed
        from agent.bgp.live import LiveView
        groups = {{"china_unicom": [4837], "transtelecom": [20485]}}
        feed = LiveFeed(LiveView(131279, ["175.45.176.0/22"], groups),
                        prefixes=("175.45.176.0/22",), ris_live_url={ris.url!r}, ripestat_url={stat.url!r},
                        refresh_s=3600, stall_s=30)
        async def main():
            task = asyncio.create_task(feed.run())
            while feed.view.state_time is None or not feed.status().stream_up:
                await asyncio.sleep(0.01)
            print("ready", flush=True)  # the baseline is in: the test may replay now
            while not feed.status().messages["applied"]:
                await asyncio.sleep(0.01)
            task.cancel()
            print(wscompat.version(), feed.connects, feed.status().messages["applied"],
                  sorted(feed.view.get("175.45.179.0/24").upstreams))
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
    assert len(ris.subscriptions) == 1
    ris.send(sequence_2017()[1])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split() == [probe.stdout.strip(), "1", "1", "['china_unicom',", "'transtelecom']"], out
