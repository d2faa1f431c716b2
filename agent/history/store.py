"""The writing side of the history database: the one place it is opened read-write.

Durability. The database runs in WAL mode with `synchronous=NORMAL`: a commit appends to the
write-ahead log and returns without an fsync; the log is fsynced at each checkpoint. So a commit
survives the agent being killed (kill -9, OOM, a crash: the log is in the page cache and the next open
replays it), and a power loss can lose at most the last commits since the latest checkpoint but never
corrupts the database (https://www.sqlite.org/wal.html, "synchronous" in pragma.html). For a history of
path changes that is the right trade: no fsync per row on a Raspberry Pi's SD card.

Corruption. A file SQLite cannot read (SQLITE_NOTADB, SQLITE_CORRUPT, or a failed `quick_check` at
open) is renamed `history.db.corrupt-<UTC time>` (its -wal/-shm with it, for forensics) and a new
database is started: the agent keeps recording, and `corrupt_files` says what happened.

Everything else (a full disk, a read-only or missing directory) is raised as `sqlite3.Error`/`OSError`
to the caller (the writer thread), which keeps its rows and retries: committed rows are never touched.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence

from agent.history.record import COLUMNS, PathChange
from agent.history.schema import migrate

HISTORY_FILE = "history.db"
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
_SECONDS_PER_DAY = 86400.0

log = logging.getLogger("nkprobe.history")


class CorruptDatabase(sqlite3.DatabaseError):
    """`quick_check` found damage."""


def is_corruption(exc: BaseException) -> bool:
    """True for errors that mean "this file is damaged", as opposed to "cannot write now"."""
    if isinstance(exc, CorruptDatabase):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


class HistoryStore:
    """A read-write connection to `<state_dir>/history.db`. Not thread-safe: one thread owns it."""

    def __init__(
        self,
        state_dir: str,
        *,
        clock: Callable[[], float] = time.time,
        check_on_open: bool = True,
    ) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, HISTORY_FILE)
        self._clock = clock
        self._check_on_open = check_on_open
        self._conn: sqlite3.Connection | None = None
        self.corrupt_files: list[str] = []  # where damaged databases were moved, oldest first

    def open(self) -> None:
        """Open (creating the directory and file), migrate; a damaged file is moved aside once."""
        if self._conn is not None:
            return
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self.move_aside(exc)
            self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(self.state_dir, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly one transaction.
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            if self._check_on_open:
                # quick_check is O(size); the history is small (one row per change), so this is cheap
                # and catches a damaged file at start instead of at the first write.
                result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                if result != ["ok"]:
                    raise CorruptDatabase(f"quick_check failed: {'; '.join(result[:3])}")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def move_aside(self, reason: BaseException) -> str:
        """Rename the damaged database (and its -wal, -shm) out of the way; returns the new name."""
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        dest = f"{self.path}.corrupt-{stamp}"
        n = 1
        while os.path.exists(dest):
            n += 1
            dest = f"{self.path}.corrupt-{stamp}-{n}"
        os.replace(self.path, dest)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, dest + suffix)
        self.corrupt_files.append(dest)
        log.error(
            "history database %s is damaged (%s); moved it to %s and started a new one",
            self.path,
            reason,
            dest,
        )
        return dest

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    def insert(self, changes: Sequence[PathChange]) -> list[int]:
        """Write `changes` in one transaction; returns their row ids. All or nothing."""
        conn = self._require()
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT INTO changes ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        ids: list[int] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                cursor = conn.execute(sql, change.to_row())
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return ids

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete rows older than `retention_days`; returns how many."""
        conn = self._require()
        cutoff = (self._clock() if now is None else now) - retention_days * _SECONDS_PER_DAY
        cursor = conn.execute("DELETE FROM changes WHERE time < ?", (cutoff,))
        return cursor.rowcount

    def count(self) -> int:
        row = self._require().execute("SELECT count(*) FROM changes").fetchone()
        return int(row[0])
