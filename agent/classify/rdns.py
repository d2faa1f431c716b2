"""Reverse DNS names of hop addresses, as evidence for classification (names ending in a group's suffix).

Names are never allowed to slow a result down: `ReverseNames.names()` waits at most a budget, returns what
is known by then, and lets slower lookups finish in the background to fill the cache for the next round.
The resolver is injected (a blocking `address -> name` function, run in a small thread pool, because
`socket.gethostbyaddr` blocks and has no timeout of its own); tests pass a fake one, never real DNS.
The cache is bounded in entries (LRU) and in age (positive and negative TTLs), and so is the number of
lookups in flight.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio is imported where it is used: `nkprobe trace` asks gethostbyaddr before it
    import asyncio

Resolver = Callable[[str], "str | None"]


# Hostname hints: the one table of patterns the classifier reads reverse names with (agent.classify).
# Operators name the interface that faces a neighbour after that neighbour, in their own domain: NTT's
# `trans-telecom-0.ae-3.r20.frnkge13.de.bb.gin.ntt.net` (README "How it tags"), Telia's
# `<peer>-ic-<id>-...telia.net`,
# and many `asNNNN` tokens (Luckie et al., "bdrmap: Inference of Borders Between IP Networks", IMC 2016,
# sec. 4; Luckie et al., "Learning to Extract and Use ASNs in Hostnames", IMC 2020, which found AS
# numbers in the hostnames of 2.1M router interfaces, most naming the neighbour across the link). So a
# token names a network on the far side of that interface, never by itself the router's operator: only a
# configured suffix (the operator's own domain, agent.config DEFAULT_NAME_SUFFIXES) says that.
NAME_TOKEN_PATTERNS: tuple[tuple[str, str], ...] = (
    # (group, regex over the lower-cased name); labels split on '.', '-' and '_' count as boundaries
    ("transtelecom", r"(?<![a-z0-9])(?:trans-?telecom|transtelecom|ttk)(?![a-z])"),
    ("china_unicom", r"(?<![a-z0-9])(?:china-?unicom|chinaunicom|cu-?global|unicom)(?![a-z])"),
)
# `as4837`, `AS20485-ic`, `ae1.as9929.hkg` (not `aspen`, `as1`-style router counters are still AS tokens:
# the classifier only believes a token that agrees with other evidence, never on its own).
AS_TOKEN_PATTERN = r"(?<![a-z0-9])as(\d{3,10})(?![0-9])"

_TOKEN_RES = tuple((group, re.compile(rx)) for group, rx in NAME_TOKEN_PATTERNS)
_AS_RE = re.compile(AS_TOKEN_PATTERN)


def name_tokens(name: str) -> tuple[tuple[str, str], ...]:
    """The neighbour hints in a reverse name: ("group", name) or ("asn", number), in order, no repeats.

    >>> name_tokens("trans-telecom-0.ae-3.r20.frnkge13.de.bb.gin.ntt.net")
    (('group', 'transtelecom'),)
    >>> name_tokens("ae12-as4837.r01.hkg.example.net")
    (('asn', '4837'),)
    >>> name_tokens("aspen-gw.example.net"), name_tokens("mskn17.transtelecom.net")
    ((), (('group', 'transtelecom'),))
    """
    text = name.lower().rstrip(".")
    found: list[tuple[str, str]] = []
    for match in _AS_RE.finditer(text):
        hint = ("asn", match.group(1))
        if hint not in found:
            found.append(hint)
    for group, rx in _TOKEN_RES:
        if rx.search(text) and ("group", group) not in found:
            found.append(("group", group))
    return tuple(found)


def gethostbyaddr(address: str) -> tuple[str, list[str], list[str]]:
    """The system's reverse lookup (PTR via nsswitch), raising socket.herror as the C library says: the one
    place nkprobe asks the system resolver, so the unit tests replace it here and never reach real DNS
    (tests/conftest.py)."""
    return socket.gethostbyaddr(address)


def system_resolver(address: str) -> str | None:
    """The system's reverse lookup; None when there is no name."""
    try:
        name = gethostbyaddr(address)[0]
    except (OSError, UnicodeError):  # socket.herror / gaierror are OSErrors
        return None
    return name if name and name != address else None


class _DaemonPool:
    """A few daemon worker threads. Not ThreadPoolExecutor: its workers are joined at interpreter exit,
    so one lookup stuck in gethostbyaddr (no timeout of its own; the resolver's is 5 s per try, times
    attempts) would hold a one-shot command's exit. Daemon threads are abandoned at exit instead."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[str | None], Callable[[str], str | None], str] | None]
        self._queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, arg = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(arg))
            except BaseException as exc:  # handed to the waiting side, like an executor does
                future.set_exception(exc)

    def submit(self, fn: Callable[[str], str | None], arg: str) -> Future[str | None]:
        future: Future[str | None] = Future()
        self._queue.put((future, fn, arg))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class ReverseNames:
    """A bounded, time-limited cache of reverse names in front of a blocking resolver."""

    def __init__(
        self,
        resolver: Resolver = system_resolver,
        *,
        max_entries: int = 4096,
        max_in_flight: int = 64,
        ttl_s: float = 3600.0,
        negative_ttl_s: float = 600.0,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._max_entries = max_entries
        self._max_in_flight = max_in_flight
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()  # address -> (name, expiry)
        self._pending: dict[str, asyncio.Future[str | None]] = {}
        self._pool = _DaemonPool(workers, "nkprobe-rdns")
        self.failures = 0

    def close(self) -> None:
        self._pool.shutdown()

    def __len__(self) -> int:
        return len(self._cache)

    def cached(self, address: str) -> str | None:
        """The cached name (no I/O); None when unknown, expired or known to have no name."""
        hit = self._fresh(address)
        return None if hit is None else hit[0]

    def _fresh(self, address: str) -> tuple[str | None] | None:
        entry = self._cache.get(address)
        if entry is None:
            return None
        name, expiry = entry
        if self._clock() >= expiry:
            del self._cache[address]
            return None
        self._cache.move_to_end(address)
        return (name,)

    def _store(self, address: str, name: str | None) -> None:
        ttl = self._ttl_s if name else self._negative_ttl_s
        self._cache[address] = (name, self._clock() + ttl)
        self._cache.move_to_end(address)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def _resolve(self, address: str) -> str | None:
        try:
            return self._resolver(address)
        except Exception:  # a broken resolver must not break probing: count it, remember "no name"
            self.failures += 1
            return None

    def _start(self, address: str) -> asyncio.Future[str | None] | None:
        if address in self._pending:
            return self._pending[address]
        if len(self._pending) >= self._max_in_flight:
            return None  # bounded: try again next round
        import asyncio

        loop = asyncio.get_running_loop()
        future = asyncio.wrap_future(self._pool.submit(self._resolve, address), loop=loop)
        self._pending[address] = future

        def done(f: asyncio.Future[str | None]) -> None:
            self._pending.pop(address, None)
            if not f.cancelled() and f.exception() is None:
                self._store(address, f.result())

        future.add_done_callback(done)
        return future

    async def names(self, addresses: Iterable[str], budget_s: float) -> dict[str, str]:
        """Names of `addresses` known within `budget_s` seconds (cached ones at once; no name: absent)."""
        wanted = list(dict.fromkeys(addresses))
        futures = [f for a in wanted if self._fresh(a) is None and (f := self._start(a)) is not None]
        if futures and budget_s > 0:
            import asyncio

            await asyncio.wait(futures, timeout=budget_s)
        out: dict[str, str] = {}
        for address in wanted:
            name = self.cached(address)
            if name:
                out[address] = name
        return out

    def names_blocking(self, addresses: Iterable[str], budget_s: float) -> dict[str, str]:
        """`names()` for synchronous callers (the CLI): no event loop, the same bounds."""
        wanted = list(dict.fromkeys(addresses))
        futures: dict[str, Future[str | None]] = {}
        for address in wanted:
            if self._fresh(address) is None and len(futures) < self._max_in_flight:
                futures[address] = self._pool.submit(self._resolve, address)
        if futures and budget_s > 0:
            wait(list(futures.values()), timeout=budget_s)
        for address, future in futures.items():
            if future.done() and not future.cancelled():
                self._store(address, future.result())
            else:
                future.cancel()  # too slow: not waited for, and not started if still queued
        return {a: n for a in wanted if (n := self.cached(a))}


_shared: ReverseNames | None = None


def shared() -> ReverseNames:
    """One process-wide cache with the system resolver (created on first use)."""
    global _shared
    if _shared is None:
        _shared = ReverseNames()
    return _shared


async def reverse_names(addresses: Iterable[str], timeout: float = 1.0) -> dict[str, str]:
    """Names of `addresses` found within `timeout` seconds in all, via the shared cache (for the CLI)."""
    return await shared().names(addresses, budget_s=timeout)
