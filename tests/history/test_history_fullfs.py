"""A really full disk: a tiny tmpfs (root only). Rows stay queued, committed rows stay, writes resume."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.history import HistoryReader, HistoryWriter
from tests.support.histhelp import change


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "nkprobe-test", str(mnt)], check=False)
    if proc.returncode != 0:
        # Root in a container without CAP_SYS_ADMIN: a skip on a developer's machine, never in CI.
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs as root here; CI must be able to")
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_committed_rows_and_recovers(tiny_fs: Path) -> None:
    state = tiny_fs / "state"
    writer = HistoryWriter(str(state), retry_s=60)
    n = 0
    for _ in range(500):
        for _ in range(4):
            writer.submit(change(n, evidence=(f"{n}", "e" * 2000)))
            n += 1
        if not writer.step():
            break
    else:
        pytest.fail("the 256 KiB filesystem never filled up")
    status = writer.status()
    assert not status.healthy and status.fault
    assert status.last_error is not None and "full" in status.last_error
    assert status.pending > 0
    committed = status.written
    assert committed > 0

    # What was committed is intact and readable while the disk is full.
    with HistoryReader(str(state)) as reader:
        rows = reader.changes()
    assert [int(r.evidence[0]) for r in rows] == list(range(committed))

    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_fs)], check=True)
    assert writer.step()
    status = writer.status()
    assert status.healthy and status.pending == 0 and status.written == n
    writer.close()
    conn = sqlite3.connect(state / "history.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert [
        int(r[0]) for r in conn.execute("SELECT json_extract(evidence, '$[0]') FROM changes ORDER BY id")
    ] == list(range(n))
    conn.close()


def test_read_only_filesystem_then_writable_again(tiny_fs: Path) -> None:
    state = tiny_fs / "state"
    writer = HistoryWriter(str(state), retry_s=60)
    writer.submit(change(0))
    assert writer.step()
    writer.store.close()  # as after a restart: the agent opens the file on a read-only mount
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    writer.submit(change(1))
    assert not writer.step()
    assert not writer.healthy and writer.status().pending == 1
    with HistoryReader(str(state)) as reader:
        assert [r.evidence[0] for r in reader.changes()] == ["change 0"]
    subprocess.run(["mount", "-o", "remount,rw", str(tiny_fs)], check=True)
    assert writer.step()
    assert writer.healthy and writer.status().written == 2
    writer.close()
