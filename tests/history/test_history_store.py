"""The store: WAL, schema and migrations, round trips, retention, corruption handling."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from agent.history import HistoryReader, HistoryStore
from agent.history.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate
from tests.support.histhelp import T0, change


def test_new_store_is_wal_at_current_schema(tmp_path: Path) -> None:
    store = HistoryStore(str(tmp_path / "state"))
    store.open()
    store.insert([change(0)])
    store.close()
    conn = sqlite3.connect(tmp_path / "state" / "history.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = HistoryStore(str(tmp_path))
    written = [change(i) for i in range(3)] + [change(3, ratio=None, border=None, old_tag=None)]
    ids = store.insert(written)
    assert ids == [1, 2, 3, 4]
    store.close()
    with HistoryReader(str(tmp_path)) as reader:
        read = reader.changes()
    assert read == written  # ids are not compared
    assert [c.id for c in read] == ids
    assert read[0].as_path == (3356, 20485, None, 131279)
    assert read[3].ratio is None and read[3].old_tag is None


def test_retention_deletes_only_old_rows(tmp_path: Path) -> None:
    store = HistoryStore(str(tmp_path))
    day = 86400.0
    store.insert([change(0, time=T0 - 10 * day), change(1, time=T0 - 2 * day), change(2, time=T0)])
    assert store.prune(retention_days=7, now=T0) == 1
    assert store.count() == 2
    assert store.prune(retention_days=7, now=T0) == 0


def test_migration_from_version_1_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute(
        "INSERT INTO changes (time, agent, target, prefix, old_tag, new_tag, as_path, hops, evidence, ratio) "
        "VALUES (?, 'a', '175.45.176.71', '175.45.176.0/24', 'transtelecom', 'china_unicom', '[4837]', '[]', "
        "'[\"old\"]', NULL)",
        (T0,),
    )
    conn.close()
    # A reader copes with the old schema without migrating it (it is read-only).
    with HistoryReader(str(tmp_path)) as reader:
        assert reader.version == 1
        assert reader.changes()[0].protocol == ""
    store = HistoryStore(str(tmp_path))
    store.open()
    store.insert([change(1)])
    store.close()
    with HistoryReader(str(tmp_path)) as reader:
        assert reader.version == SCHEMA_VERSION
        rows = reader.changes()
    assert [r.evidence[0] for r in rows] == ["old", "change 1"]
    assert rows[0].border is None and rows[1].border == "188.43.225.153"


def test_newer_schema_is_refused_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    store = HistoryStore(str(tmp_path))
    with pytest.raises(SchemaTooNew, match="upgrade nkprobe"):
        store.open()
    assert not list(tmp_path.glob("history.db.corrupt-*"))


def test_garbage_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "history.db").write_bytes(b"this is not sqlite at all\n" * 200)
    store = HistoryStore(str(tmp_path), clock=lambda: T0)
    with caplog.at_level(logging.ERROR, logger="nkprobe.history"):
        store.open()
    store.insert([change(0)])
    moved = tmp_path / "history.db.corrupt-20260528T202640Z"
    assert store.corrupt_files == [str(moved)]
    assert moved.read_bytes().startswith(b"this is not sqlite")
    assert store.count() == 1
    assert "damaged" in caplog.text and str(moved) in caplog.text


def test_damaged_page_fails_quick_check_and_is_moved_aside(tmp_path: Path) -> None:
    store = HistoryStore(str(tmp_path), clock=lambda: T0)
    store.insert([change(i, evidence=("x" * 500,)) for i in range(40)])
    store.close()
    path = tmp_path / "history.db"
    page = 4096
    assert path.stat().st_size >= 4 * page
    with open(path, "r+b") as fh:  # keep the header (page 1), smash a b-tree page
        fh.seek(2 * page)
        fh.write(os.urandom(page))
    store = HistoryStore(str(tmp_path), clock=lambda: T0 + 1)
    store.open()
    assert len(store.corrupt_files) == 1
    assert store.count() == 0  # a fresh database
    store.insert([change(99)])
    assert store.count() == 1


def test_two_corruptions_in_one_second_get_distinct_names(tmp_path: Path) -> None:
    for _ in range(2):
        (tmp_path / "history.db").write_bytes(b"garbage" * 1000)
        store = HistoryStore(str(tmp_path), clock=lambda: T0)
        store.open()
        store.close()
    assert len(list(tmp_path.glob("history.db.corrupt-*"))) == 2


def test_doctests() -> None:
    import doctest

    import agent.history.query
    import agent.history.record

    for module in (agent.history.record, agent.history.query):
        failures, tried = doctest.testmod(module)
        assert tried > 0 and failures == 0, module.__name__
