"""The history schema, versioned by `PRAGMA user_version`; each migration moves it one version up.

Migrations only ever add (tables, columns, indexes): an older row stays readable by a newer nkprobe, and
a database newer than this code is refused for writing rather than guessed at.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: one row per confirmed upstream change.
    """
    CREATE TABLE changes (
        id       INTEGER PRIMARY KEY,
        time     REAL NOT NULL,          -- seconds since the epoch, UTC
        agent    TEXT NOT NULL,          -- agent.name
        target   TEXT NOT NULL,          -- the configured address
        prefix   TEXT NOT NULL,          -- its /24
        old_tag  TEXT,                   -- NULL: none known before
        new_tag  TEXT NOT NULL,
        as_path  TEXT NOT NULL,          -- JSON array of ASNs, null for an unknown stretch
        hops     TEXT NOT NULL,          -- JSON array of {"hop", "from", "rtt_ms"}
        evidence TEXT NOT NULL,          -- JSON array of strings
        ratio    TEXT                    -- JSON object tag -> share of flows, or NULL
    );
    CREATE INDEX changes_time ON changes (time);
    CREATE INDEX changes_target_time ON changes (target, time);
    """,
    # 2: the protocol of the confirming trace and the border address, for queries without JSON parsing.
    """
    ALTER TABLE changes ADD COLUMN protocol TEXT NOT NULL DEFAULT '';
    ALTER TABLE changes ADD COLUMN border TEXT;
    CREATE INDEX changes_prefix_time ON changes (prefix, time);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was written by a newer nkprobe."""


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to version `target`, each step in its own transaction. Returns the old version.

    `conn` must be in autocommit mode (isolation_level=None) so the explicit BEGIN/COMMIT here hold.
    """
    version = user_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"history schema version {version} is newer than this nkprobe knows ({SCHEMA_VERSION}); "
            "upgrade nkprobe or point agent.state_dir elsewhere"
        )
    for number in range(version + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            # PRAGMA cannot take a bound parameter; `number` is our own int.
            conn.execute(f"PRAGMA user_version = {int(number)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would COMMIT our transaction first)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
