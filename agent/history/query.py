"""Read-only access to the history, for `nkprobe history` and anyone else (never writes, never migrates).

The database is opened with `mode=ro`, so the command works while the agent writes (WAL readers do not
block the writer) and for another user with read access only. SQLite needs the -shm file to read a WAL
database; when the agent is not running it may have removed -wal/-shm on its clean close, and a reader
without write access to the directory cannot recreate them: then, and only then, the file is opened
`immutable=1` (safe because no writer exists while there is no -wal file).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import quote

from agent.history.record import COLUMNS, PathChange
from agent.history.schema import SCHEMA_VERSION, user_version
from agent.history.store import HISTORY_FILE

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class NoHistory(Exception):
    """There is no history database yet, or it holds no table: the agent has not recorded anything."""


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 90s, 15m, 12h, 7d, 2w or 1h30m (a bare number is seconds).

    >>> parse_duration("90s"), parse_duration("15m"), parse_duration("12h"), parse_duration("7d")
    (90.0, 900.0, 43200.0, 604800.0)
    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration("tomorrow")
    Traceback (most recent call last):
    ValueError: not a duration: 'tomorrow' (write e.g. 90s, 15m, 12h or 7d)
    """
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ValueError(f"not a duration: {text!r} (write e.g. 90s, 15m, 12h or 7d)") from None
    if not seconds > 0:
        raise ValueError(f"not a duration: {text!r} (it must be more than 0)")
    return seconds


class HistoryReader:
    """Queries over `<state_dir>/history.db`, read-only. Use as a context manager."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, HISTORY_FILE)
        if not os.path.exists(self.path):
            raise NoHistory(f"no path history yet: {self.path} does not exist")
        self._conn = self._connect()
        try:
            version = user_version(self._conn)
        except sqlite3.Error:
            self._conn.close()
            raise
        if version == 0:
            self._conn.close()
            raise NoHistory(f"no path history yet: {self.path} holds no table")
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise sqlite3.OperationalError(
                f"{self.path} has schema version {version}, newer than this nkprobe ({SCHEMA_VERSION}); "
                "upgrade nkprobe"
            )
        self.version = version

    def _connect(self) -> sqlite3.Connection:
        uri = "file:" + quote(os.path.abspath(self.path))
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            if os.path.exists(self.path + "-wal"):
                raise  # a writer may be active: never read it as immutable
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _columns(self) -> str:
        # A version-1 database (no protocol/border columns yet) still reads: fill the gaps.
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(changes)")}
        defaults = {"protocol": "''", "border": "NULL"}
        return ", ".join(c if c in have else f"{defaults[c]} AS {c}" for c in COLUMNS)

    def changes(
        self,
        *,
        target: str | None = None,
        network: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[PathChange]:
        """Changes oldest first, optionally for one target address, or targets inside `network`."""
        where, args = self._filter(target, since, until)
        sql = f"SELECT id, {self._columns()} FROM changes{where} ORDER BY time, id"
        return [c for c in self._rows(sql, args) if _inside(c.target, network)]

    def last_before(
        self, when: float, *, target: str | None = None, network: str | None = None
    ) -> list[PathChange]:
        """Per target, the latest change before `when`: the tag in force when a window opens."""
        where, args = self._filter(target, None, when)
        sql = f"SELECT id, {self._columns()} FROM changes{where} ORDER BY time, id"
        latest: dict[str, PathChange] = {}
        for change in self._rows(sql, args):
            if _inside(change.target, network):
                latest[change.target] = change
        return sorted(latest.values(), key=lambda c: (c.time, c.id or 0))

    def latest(
        self,
        limit: int,
        *,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[PathChange]:
        """The `limit` newest changes (of one target, in [since, until)), newest first: a bounded read for
        the status page, however long the history (indexes changes_time and changes_target_time)."""
        where, args = self._filter(target, since, until)
        sql = f"SELECT id, {self._columns()} FROM changes{where} ORDER BY time DESC, id DESC LIMIT ?"
        return list(self._rows(sql, [*args, max(0, int(limit))]))

    def targets(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT DISTINCT target FROM changes ORDER BY target")]

    def _filter(
        self, target: str | None, since: float | None, until: float | None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        if target is not None:
            clauses.append("target = ?")
            args.append(target)
        if since is not None:
            clauses.append("time >= ?")
            args.append(since)
        if until is not None:
            clauses.append("time < ?")
            args.append(until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def _rows(self, sql: str, args: list[object]) -> Iterator[PathChange]:
        with closing(self._conn.execute(sql, args)) as cursor:
            for row in cursor:
                yield PathChange.from_row(int(row[0]), row[1:])


def _inside(address: str, network: str | None) -> bool:
    if network is None:
        return True
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network)
    except ValueError:
        return False
