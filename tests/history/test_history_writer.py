"""The writer: queue, batches, faults and recovery, bounded memory, retention, corruption mid-life.

Most tests step the writer with `step()` (no thread, no sleeping); the thread itself is tested with
`flush()`, which waits on the writer's condition, not on a timer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from agent.history import HistoryReader, HistoryStore, HistoryWriter, PathChange
from agent.history.store import CorruptDatabase
from tests.support.histhelp import T0, change


class FlakyStore(HistoryStore):
    """A real store whose inserts fail while `fail` holds an exception."""

    def __init__(self, state_dir: str) -> None:
        super().__init__(state_dir, clock=lambda: T0)
        self.fail: BaseException | None = None
        self.batches: list[int] = []

    def insert(self, changes: Sequence[PathChange]) -> list[int]:
        if self.fail is not None:
            exc, self.fail = self.fail, (None if isinstance(self.fail, CorruptDatabase) else self.fail)
            raise exc
        self.batches.append(len(changes))
        return super().insert(changes)


def rows(state_dir: Path) -> list[PathChange]:
    with HistoryReader(str(state_dir)) as reader:
        return reader.changes()


def test_thread_commits_submitted_changes(tmp_path: Path) -> None:
    writer = HistoryWriter(str(tmp_path / "state"))
    writer.start()
    for i in range(5):
        writer.submit(change(i))
    assert writer.flush(timeout=10)
    assert writer.close()
    assert [c.evidence[0] for c in rows(tmp_path / "state")] == [f"change {i}" for i in range(5)]
    status = writer.status()
    assert status.healthy and status.written == 5 and status.pending == 0 and not status.fault


def test_submit_returns_before_the_commit(tmp_path: Path) -> None:
    writer = HistoryWriter(str(tmp_path))  # not started: nothing can be committed
    writer.submit(change(0))
    writer.submit(change(1))
    assert writer.status().pending == 2
    assert writer.step()
    assert writer.status().pending == 0
    assert len(rows(tmp_path)) == 2


def test_disk_full_keeps_rows_queued_and_recovers(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path))
    writer = HistoryWriter(str(tmp_path), store=store)
    writer.submit(change(0))
    assert writer.step()  # committed before the fault
    store.fail = sqlite3.OperationalError("database or disk is full")
    writer.submit(change(1))
    writer.submit(change(2))
    assert not writer.step()
    status = writer.status()
    assert not status.healthy and status.fault
    assert status.last_error is not None and "database or disk is full" in status.last_error
    assert status.pending == 2
    assert [c.evidence[0] for c in rows(tmp_path)] == ["change 0"]  # the committed row is intact
    assert not writer.step()  # still failing: still queued, and the same error is counted once
    assert writer.status().write_errors == 1
    store.fail = None
    assert writer.step()
    status = writer.status()
    assert status.healthy and status.last_error is None and status.pending == 0 and status.written == 3
    assert status.write_errors == 1 and not status.fault
    assert [c.evidence[0] for c in rows(tmp_path)] == ["change 0", "change 1", "change 2"]


def test_state_dir_blocked_by_a_file_then_freed(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("not a directory")
    writer = HistoryWriter(str(blocked))
    writer.submit(change(0))
    assert not writer.step()
    assert not writer.healthy
    assert writer.last_error is not None and str(blocked) in writer.last_error
    blocked.unlink()
    assert writer.step()
    assert writer.healthy
    assert len(rows(blocked)) == 1


def test_queue_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path))
    store.fail = sqlite3.OperationalError("disk I/O error")
    writer = HistoryWriter(str(tmp_path), store=store, max_pending=3)
    for i in range(5):
        writer.submit(change(i))
    status = writer.status()
    assert status.pending == 3 and status.dropped == 2 and status.fault
    assert not writer.step()
    store.fail = None
    assert writer.step()
    assert [c.evidence[0] for c in rows(tmp_path)] == ["change 2", "change 3", "change 4"]


def test_batches_are_bounded(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path))
    writer = HistoryWriter(str(tmp_path), store=store)
    for i in range(600):
        writer.submit(change(i))
    while writer.status().pending:
        assert writer.step()
    assert store.batches == [256, 256, 88]


def test_corruption_found_on_write_moves_the_file_aside_and_keeps_the_batch(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path))
    writer = HistoryWriter(str(tmp_path), store=store)
    writer.submit(change(0))
    assert writer.step()
    store.fail = CorruptDatabase("database disk image is malformed")
    writer.submit(change(1))
    assert not writer.step()
    assert len(store.corrupt_files) == 1
    assert writer.status().fault
    assert writer.step()  # into the fresh file
    assert [c.evidence[0] for c in rows(tmp_path)] == ["change 1"]
    assert writer.status().corrupt_files == tuple(store.corrupt_files)
    assert writer.status().fault  # sticky: an operator should look at the moved file


def test_retention_runs_at_start_and_then_every_interval(tmp_path: Path) -> None:
    day = 86400.0
    store = HistoryStore(str(tmp_path))
    store.insert([change(0, time=T0 - 30 * day), change(1, time=T0 - 3 * day)])
    store.close()
    now = [T0]
    mono = [100.0]
    writer = HistoryWriter(
        str(tmp_path),
        retention_days=7,
        prune_interval_s=3600,
        clock=lambda: now[0],
        monotonic=lambda: mono[0],
    )
    assert writer.step()
    assert writer.status().pruned == 1
    now[0] += 5 * day  # the 3-day-old row is now 8 days old, but the interval has not passed
    assert writer.step()
    assert writer.status().pruned == 1
    mono[0] += 3600
    assert writer.step()
    assert writer.status().pruned == 2
    assert rows(tmp_path) == []


def test_close_reports_unwritten_changes(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("x")
    writer = HistoryWriter(str(blocked), retry_s=60)
    writer.start()
    writer.submit(change(0))
    assert not writer.close(timeout=0.2)
