"""The status page's I/O edge: read the history (bounded), take the snapshot, build the model, cache it.

Called from the HTTP server's threads (agent.exporter.server), never from the probing event loop, so a
slow disk delays a page load, not a probe. A page load costs little however often it comes: the history
extract is read at most every `history_ttl_s` (one SQLite read of a few LIMITed, indexed queries) and
the model and its two renderings are reused for `page_ttl_s`; concurrent loads wait for the one build.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.exporter.status.model import DEFAULT_LIMITS, WINDOW_S, HistoryExtract, Limits, status_model
from agent.exporter.status.page import render_page
from agent.history import HistoryReader, NoHistory
from agent.history.writer import HistoryStatus
from agent.results import Snapshot

if TYPE_CHECKING:  # agent.bgp is imported only when a BGP view is configured
    from agent.bgp.view import BgpCheck


def read_history(
    state_dir: str, addresses: list[str], now: float, limits: Limits = DEFAULT_LIMITS
) -> HistoryExtract:
    """The newest changes, and per target the changes of the last 24 h (newest first, cut to the limit
    plus one, so a cut is seen) and the last one before: 2 + 2 x targets LIMITed queries on indexes."""
    start = now - WINDOW_S
    try:
        with HistoryReader(state_dir) as reader:
            recent = reader.latest(limits.changes)
            window, before, complete = {}, {}, {}
            for address in addresses:
                rows = reader.latest(limits.timeline_steps + 1, target=address, since=start)
                complete[address] = len(rows) <= limits.timeline_steps
                window[address] = list(reversed(rows[: limits.timeline_steps]))
                last = reader.latest(1, target=address, until=start)
                if last:
                    before[address] = last[0]
    except NoHistory:
        return HistoryExtract()
    except (sqlite3.Error, OSError) as exc:
        return HistoryExtract(error=f"cannot read the path history: {exc}")
    return HistoryExtract(recent=recent, window=window, before=before, complete=complete)


class PacketRate:
    """Packets per second between two page builds at least `min_s` apart (sans-I/O: times come in).

    >>> r = PacketRate(min_s=5.0)
    >>> r.observe(0.0, 100), r.observe(10.0, 300), r.observe(12.0, 340)
    (None, 20.0, 20.0)
    """

    def __init__(self, min_s: float = 5.0) -> None:
        self.min_s = min_s
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None

    def observe(self, now: float, total: int) -> float | None:
        if self._last is None or total < self._last[1]:
            self._last = (now, total)
        elif now - self._last[0] >= self.min_s:
            self._rate = (total - self._last[1]) / (now - self._last[0])
            self._last = (now, total)
        return self._rate


class StatusSource:
    """What the server asks for `/` and `/status.json`: the current page, built at most every
    `page_ttl_s`. Everything it reads comes in as callables, so a reload's new values show."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        state_dir: Callable[[], str | None],
        bgp: Callable[[], BgpCheck | None] = lambda: None,
        asn_of: Callable[[str], int | None] = lambda _a: None,
        max_pps: Callable[[], float | None] = lambda: None,
        history_status: Callable[[], HistoryStatus | None] = lambda: None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        page_ttl_s: float = 2.0,
        history_ttl_s: float = 10.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._snapshot, self._state_dir, self._bgp = snapshot, state_dir, bgp
        self._asn_of, self._max_pps, self._history_status = asn_of, max_pps, history_status
        self._wall, self._monotonic = wall, monotonic
        self.page_ttl_s, self.history_ttl_s, self.limits = page_ttl_s, history_ttl_s, limits
        self._lock = threading.Lock()
        self._rate = PacketRate()
        self._history: tuple[float, HistoryExtract] | None = None
        self._built: tuple[float, dict[str, Any], bytes, bytes] | None = None
        self._gzipped: dict[str, tuple[float, bytes]] = {}
        self.builds = 0  # models built (tests count the cache's hits by it)

    def _extract(self, snap: Snapshot, now: float, mono: float) -> HistoryExtract:
        if self._history is not None and mono - self._history[0] < self.history_ttl_s:
            return self._history[1]
        state_dir = self._state_dir()
        addresses = [t.target.address for t in snap.targets]
        extract = read_history(state_dir, addresses, now, self.limits) if state_dir else HistoryExtract()
        self._history = (mono, extract)
        return extract

    def _current(self) -> tuple[dict[str, Any], bytes, bytes]:
        with self._lock:
            mono = self._monotonic()
            if self._built is not None and mono - self._built[0] < self.page_ttl_s:
                return self._built[1:]
            snap, now = self._snapshot(), self._wall()
            model = status_model(
                snap,
                now=now,
                history=self._extract(snap, now, mono),
                bgp=self._bgp(),
                asn_of=self._asn_of,
                writer=self._history_status(),
                max_pps=self._max_pps(),
                pps_recent=self._rate.observe(mono, sum(snap.packets_sent.values())),
                limits=self.limits,
            )
            page = render_page(model).encode()
            data = json.dumps(model, separators=(",", ":"), allow_nan=False).encode()
            self._built = (mono, model, page, data)
            self.builds += 1
            return model, page, data

    def model(self) -> dict[str, Any]:
        return self._current()[0]

    def html(self) -> bytes:
        return self._current()[1]

    def json(self) -> bytes:
        return self._current()[2]

    def gzipped(self, which: str) -> bytes:
        """The page ("html") or its JSON ("json") gzip-compressed, once per build: a page of 50 targets
        is a tenth of its size on the wire (browsers and curl --compressed ask for it)."""
        body = self.html() if which == "html" else self.json()
        with self._lock:
            built = self._built[0] if self._built else 0.0
            cached = self._gzipped.get(which)
            if cached is None or cached[0] != built:
                # Level 6 (zlib's default): nearly level 9's size at a third of its time on a Pi.
                cached = (built, gzip.compress(body, compresslevel=6, mtime=0))
                self._gzipped[which] = cached
            return cached[1]
