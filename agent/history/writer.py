"""The single writer thread of the path history, so SQLite never blocks the event loop.

The agent calls `writer.submit(change)` (from any thread): the change goes into a bounded in-memory
queue and the call returns at once. The writer thread commits queued changes in
batches, one transaction each, and runs retention every `prune_interval_s`.

When the database cannot be written (state_dir missing or read-only, disk full, locked), the rows stay
queued, `healthy` turns False with `last_error` saying why (each new error counted in `write_errors`),
and the thread retries every `retry_s`. The exporter reads `status()` at scrape time
(nkprobe_fault{kind="history"}, nkprobe_history_*): the writer is the one source of its health.
The queue holds at most `max_pending` changes; beyond that the oldest is dropped and counted in
`dropped` (a history with a hole beats an agent that runs out of memory). Committed rows are never
touched by any of this: a failed transaction rolls back only itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.history.record import PathChange
from agent.history.schema import SchemaTooNew
from agent.history.store import HistoryStore, is_corruption

log = logging.getLogger("nkprobe.history")

BATCH = 256


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """The writer's health and counts of the moment, read by the exporter at scrape time."""

    healthy: bool  # the latest attempt to open or write the database succeeded
    last_error: str | None  # why not, while unhealthy
    pending: int  # changes queued, not yet committed
    written: int  # changes committed since start
    dropped: int  # changes lost because the queue was full
    pruned: int  # changes deleted by retention since start
    corrupt_files: tuple[str, ...]  # damaged databases moved aside since start
    write_errors: int = 0  # failures to open or write the database, each new error once

    @property
    def fault(self) -> bool:
        """Something needs an operator: writes failing, rows dropped, or a damaged file moved aside."""
        return not self.healthy or self.dropped > 0 or bool(self.corrupt_files)


class HistoryWriter:
    """Owns a `HistoryStore` on its own thread. Start with `start()`, stop with `close()`."""

    def __init__(
        self,
        state_dir: str,
        *,
        retention_days: float = 400.0,
        prune_interval_s: float = 3600.0,
        max_pending: int = 10000,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        store: HistoryStore | None = None,
    ) -> None:
        self.store = store or HistoryStore(state_dir, clock=clock)
        self.retention_days = retention_days
        self.prune_interval_s = prune_interval_s
        self.max_pending = max_pending
        self.retry_s = retry_s
        self._clock = clock
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._pending: deque[tuple[int, PathChange]] = deque()
        self._seq = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._healthy = True
        self._last_error: str | None = None
        self._written = 0
        self._dropped = 0
        self._pruned = 0
        self._write_errors = 0
        self._next_prune = 0.0  # monotonic
        self._wake = False

    # -- the producer side (any thread, or the event loop) ----------------------------------------

    def submit(self, change: PathChange) -> None:
        """Queue one change; never blocks on the disk, never raises for storage faults."""
        with self._cond:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self._dropped += 1
                log.error("history queue full (%d changes); dropped the oldest", self.max_pending)
            self._seq += 1
            self._pending.append((self._seq, change))
            self._cond.notify()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def status(self) -> HistoryStatus:
        with self._cond:
            return HistoryStatus(
                healthy=self._healthy,
                last_error=self._last_error,
                pending=len(self._pending),
                written=self._written,
                dropped=self._dropped,
                pruned=self._pruned,
                corrupt_files=tuple(self.store.corrupt_files),
                write_errors=self._write_errors,
            )

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="nkprobe-history", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued change is committed; False if that did not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 5.0) -> bool:
        """Commit what is queued (up to `timeout`), stop the thread, close the database.

        Returns False if changes were left uncommitted (they are logged as lost).
        """
        flushed = self.flush(timeout) if self._thread is not None else not self._pending
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.store.close()
        if not flushed:
            log.error("history: %d path changes were not written before shutdown", len(self._pending))
        return flushed

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._wake and not self._pending and not self._prune_due():
                    self._cond.wait(self._wait_time())
                if self._stop:
                    return
                self._wake = False
            if not self.step():
                with self._cond:
                    if not self._stop and not self._wake:
                        self._cond.wait(self.retry_s)

    def step(self) -> bool:
        """One turn of the writer: commit a batch of queued changes, then run retention if it is due.

        The thread calls it in a loop; tests call it directly, without a thread, to step the writer.
        Returns False if the database could not be written (the changes stay queued).
        """
        with self._cond:
            batch = list(self._pending)[:BATCH]
        ok = self._write(batch)
        if ok and self._prune_due():
            self._prune()
        return ok

    def _prune_due(self) -> bool:
        return self._monotonic() >= self._next_prune

    def _wait_time(self) -> float:
        return max(0.0, self._next_prune - self._monotonic())

    def _write(self, batch: list[tuple[int, PathChange]]) -> bool:
        """Open if needed and commit `batch`; on failure keep it queued. Returns success."""
        try:
            self.store.open()
            if batch:
                self.store.insert([change for _, change in batch])
        except Exception as exc:
            if is_corruption(exc):
                # Damage found mid-life: set the file aside, the batch goes into the new one next turn.
                try:
                    self.store.move_aside(exc)
                except OSError as move_exc:
                    self._fail(f"damaged database and cannot move it aside: {move_exc}")
                    return False
                self._fail(f"damaged database moved aside: {exc}")
                with self._cond:
                    self._wake = True  # retry at once into the fresh file
                return False
            self.store.close()  # reopen next time: the directory may have come back
            if isinstance(exc, SchemaTooNew):
                self._fail(str(exc))
            else:
                self._fail(f"cannot write {self.store.path}: {exc}")
            return False
        with self._cond:
            last = batch[-1][0] if batch else 0
            while self._pending and self._pending[0][0] <= last:
                self._pending.popleft()
            self._written += len(batch)
            if not self._healthy:
                log.warning("history: writing to %s again", self.store.path)
            self._healthy = True
            self._last_error = None
            self._cond.notify_all()
        return True

    def _fail(self, message: str) -> None:
        with self._cond:
            if self._healthy or message != self._last_error:
                self._write_errors += 1  # nkprobe_history_write_errors_total: each new error once
                log.error(
                    "history: %s; keeping %d changes in memory and retrying", message, len(self._pending)
                )
            self._healthy = False
            self._last_error = message
            self._cond.notify_all()

    def _prune(self) -> None:
        self._next_prune = self._monotonic() + self.prune_interval_s
        try:
            deleted = self.store.prune(self.retention_days, now=self._clock())
        except Exception as exc:
            log.error("history: retention failed: %s", exc)
            return
        with self._cond:
            self._pruned += deleted
        if deleted:
            log.info("history: deleted %d changes older than %g days", deleted, self.retention_days)
