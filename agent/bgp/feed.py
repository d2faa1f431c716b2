"""The live BGP view's I/O (asyncio): a refresh from RIPEstat at start and every `refresh_s`, and the
RIS Live stream between refreshes, both applied to one agent.bgp.live.LiveView. The view's changes go
to `on_change` (the agent wakes that /24's trace loops); `status()` is read at scrape time.

Faults, none fatal, none waited on by probing:
- the stream drops, is refused, or stalls (nothing, not even the answer to our JSON ping, for
  `stall_s`): reconnect after a jittered exponential backoff (1 s doubling to 5 min, x0.5-1.5, so a
  fleet that lost RIS Live together does not return together), subscribe again, and refresh from
  RIPEstat (updates were missed while it was down); the view is stale until both are back;
- a message that is not JSON or not a RIS Live message: counted by outcome and skipped;
- a refresh that fails or answers with something other than the documented envelope: one log line, a
  count, the last good view kept (stale), and a retry with the same backoff.

What is sent: to RIS Live, one `ris_subscribe` for each destination prefix with `moreSpecific` (and
`lessSpecific`, so a covering route is seen too) and a JSON ping every third of `stall_s`; to RIPEstat,
agent.bgp.fetch's GET requests. Public data about the destination only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.bgp.fetch import Getter, fetch_state, get
from agent.bgp.live import Change, LiveView, PrefixState
from agent.config import Config
from agent.errors import InputError, RateLog

log = logging.getLogger("nkprobe.bgp")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0
OPEN_TIMEOUT_S = 10.0
FETCH_TIMEOUT_S = 20.0
REFRESH_RESULTS = ("ok", "failed")


def backoff_s(
    attempt: int, rng: random.Random, low: float = BACKOFF_MIN_S, high: float = BACKOFF_MAX_S
) -> float:
    """The wait before reconnect `attempt` (1, 2, ...): doubling from `low` to `high`, times 0.5-1.5.

    >>> r = random.Random(1)
    >>> [round(backoff_s(n, r, 1.0, 8.0), 2) for n in (1, 2, 3, 4, 5)]
    [0.63, 2.69, 5.06, 6.04, 7.96]
    """
    return float(min(high, low * 2.0 ** (attempt - 1)) * rng.uniform(0.5, 1.5))


def subscriptions(prefixes: tuple[str, ...]) -> list[str]:
    """The RIS Live subscribe messages, one per destination prefix (https://ris-live.ripe.net/manual/,
    `ris_subscribe`: `prefix`, `moreSpecific`, `lessSpecific`, `type`)."""
    return [
        json.dumps(
            {
                "type": "ris_subscribe",
                "data": {"prefix": p, "moreSpecific": True, "lessSpecific": True, "type": "UPDATE"},
            }
        )
        for p in prefixes
    ]


def with_client(url: str) -> str:
    """RIS Live asks clients to name themselves with `?client=` (its manual, "Authentication").

    >>> with_client("wss://ris-live.ripe.net/v1/ws/")
    'wss://ris-live.ripe.net/v1/ws/?client=nkprobe'
    """
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    if not any(k == "client" for k, _ in query):
        query.append(("client", "nkprobe"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """What a scrape reads (DESIGN idea 8: asked at scrape time, not copied into the results)."""

    prefixes: tuple[PrefixState, ...]
    labels: tuple[str, ...]
    stream_up: bool
    stale: bool
    messages: Mapping[str, int]
    refreshes: Mapping[str, int]
    state_time: float | None
    view: LiveView

    def in_bgp(self, prefix: str, tag: str) -> bool | None:
        return self.view.in_bgp(prefix, tag)


class LiveFeed:
    """Runs the view's I/O until cancelled; `status()` from any thread."""

    def __init__(
        self,
        view: LiveView,
        *,
        prefixes: tuple[str, ...],
        ris_live_url: str,
        ripestat_url: str,
        refresh_s: float,
        stall_s: float,
        on_change: Callable[[Change], None] = lambda change: None,
        on_state: Callable[[], None] = lambda: None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        getter: Getter = get,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.view = view
        self._prefixes = prefixes
        self._url = with_client(ris_live_url)
        self._ripestat_url = ripestat_url
        self._refresh_s = refresh_s
        self._stall_s = stall_s
        self._on_change = on_change
        self._on_state = on_state  # after each good refresh, before its changes
        self._wall = wall
        self._rng = rng or random.Random()
        self._getter = getter
        self._backoff = (backoff_min_s, backoff_max_s)
        self._stream_up = False
        self._refresh_ok = False
        self._refresh_now: asyncio.Event | None = None
        self.refreshes: dict[str, int] = dict.fromkeys(REFRESH_RESULTS, 0)
        self.connects = 0  # successful connections, for tests
        self._log = RateLog(log)

    @classmethod
    def from_config(
        cls,
        config: Config,
        on_change: Callable[[Change], None],
        on_state: Callable[[LiveFeed], None] = lambda feed: None,
    ) -> LiveFeed:
        """The feed of `config`'s destination and [bgp] keys (the agent's and `nkprobe bgp --live`'s)."""
        dest = config.destination
        feed = cls(
            LiveView(dest.asn, dest.prefixes, config.upstreams),
            prefixes=tuple(dest.prefixes),
            ris_live_url=config.bgp.ris_live_url,
            ripestat_url=config.bgp.ripestat_url,
            refresh_s=config.bgp.refresh_s,
            stall_s=config.bgp.stall_s,
            on_change=on_change,
        )
        feed._on_state = lambda: on_state(feed)
        return feed

    def status(self) -> LiveStatus:
        v = self.view
        return LiveStatus(
            v.prefixes, v.labels, self._stream_up, not (self._stream_up and self._refresh_ok),
            dict(v.counts), dict(self.refreshes), v.state_time, v,
        )  # fmt: skip

    async def run(self) -> None:
        """The refresh and the stream, until cancelled."""
        self._refresh_now = asyncio.Event()
        await asyncio.gather(self._refresh_loop(), self._stream_loop())

    # -- RIPEstat ------------------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """One RIPEstat refresh applied to the view; False (view kept, stale) when it failed."""
        view = self.view
        try:
            state = await asyncio.to_thread(
                fetch_state, self._ripestat_url, view.destination_asn, self._prefixes, FETCH_TIMEOUT_S,
                self._getter,
            )  # fmt: skip
        except InputError as exc:
            self.refreshes["failed"] += 1
            self._refresh_ok = False
            self._log.warn(
                "refresh", "BGP refresh from RIPEstat failed, keeping the last view (stale): %s", exc
            )
            return False
        self.refreshes["ok"] += 1
        self._refresh_ok = True
        changes = view.apply_state(state, self._wall())
        self._on_state()
        self._emit(changes)
        log.info("BGP view refreshed from RIPEstat: %s", self._summary())
        return True

    async def _refresh_loop(self) -> None:
        assert self._refresh_now is not None
        failures = 0
        while True:
            self._refresh_now.clear()
            ok = await self.refresh()
            failures = 0 if ok else failures + 1
            wait = (
                self._refresh_s
                if ok
                else min(self._refresh_s, backoff_s(failures, self._rng, *self._backoff))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), timeout=wait)

    # -- RIS Live ------------------------------------------------------------------------------------

    async def _stream_loop(self) -> None:
        from agent.bgp import wscompat

        try:
            errors = wscompat.errors()
        except wscompat.MissingWebsockets as exc:
            log.error("%s", exc)
            return  # the RIPEstat refresh still runs; the stream stays down (nkprobe_bgp_stream_up 0)
        attempt = 0
        while True:
            before = self.connects
            reason = await self._session(errors)
            attempt = 1 if self.connects > before else attempt + 1  # a session that came up starts afresh
            delay = backoff_s(attempt, self._rng, *self._backoff)
            self._log.warn("stream", "RIS Live %s; reconnecting in %.1f s", reason, delay)
            await asyncio.sleep(delay)

    async def _session(self, errors: tuple[type[BaseException], ...]) -> str:
        """One connection, until it ends; why it ended."""
        from agent.bgp import wscompat

        try:
            async with wscompat.connect(self._url, open_timeout=OPEN_TIMEOUT_S) as ws:
                for message in subscriptions(self._prefixes):
                    await ws.send(message)
                self.connects += 1
                self._stream_up = True
                if self.connects > 1 and self._refresh_now is not None:
                    self._refresh_now.set()  # updates were missed while it was down
                log.info("RIS Live connected (%s), subscribed to %s", self._url, ", ".join(self._prefixes))
                return await self._receive(ws)
        except TimeoutError:
            return "stalled" if self._stream_up else "connect timed out"
        except errors as exc:
            return f"closed ({exc})" if self._stream_up else f"refused ({exc})"
        finally:
            self._stream_up = False

    async def _receive(self, ws: Any) -> str:
        ping = json.dumps({"type": "ping"})
        interval = self._stall_s / 3
        last = asyncio.get_running_loop().time()
        while True:
            # RIS Live is silent while the destination's routes do not move; our ping's pong proves the
            # stream alive. Nothing at all for stall_s is a stall (TimeoutError in _session).
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=interval)
            except TimeoutError:
                if asyncio.get_running_loop().time() - last >= self._stall_s:
                    raise
                await ws.send(ping)
                continue
            last = asyncio.get_running_loop().time()
            self.handle(raw)

    def handle(self, raw: str | bytes) -> None:
        """One frame from the stream, applied; a frame that is not JSON is a malformed message."""
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            message = None
        outcome, changes = self.view.apply_message(message, self._wall())
        if outcome == "malformed":
            self._log.warn("malformed", "RIS Live sent a malformed message, skipped: %.200r", raw)
        elif outcome == "error":
            self._log.warn("ris_error", "RIS Live error: %.200r", raw)
        self._emit(changes)

    def _emit(self, changes: list[Change]) -> None:
        for change in changes:
            self._on_change(change)  # which logs it (the agent, with what it does about it)

    def _summary(self) -> str:
        parts = []
        for p in self.view.prefixes:
            ups = ",".join(sorted(p.upstreams)) or "none"
            parts.append(f"{p.prefix} {ups} ({p.peers} peers)")
        return "; ".join(parts)
