"""kill -9 in the middle of writing: the database reopens intact with every committed row.

A subprocess writes batches through the real writer thread and prints how many changes are committed
after each flush; we SIGKILL it while it keeps writing, then reopen.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.history import HistoryReader, HistoryStore

WRITER = r"""
import sys
from agent.history import HistoryWriter, PathChange
writer = HistoryWriter(sys.argv[1])
writer.start()
n = 0
while True:
    for _ in range(25):
        n += 1
        writer.submit(PathChange(time=1.78e9 + n, agent="crash", target="175.45.176.71",
            prefix="175.45.176.0/24", old_tag="transtelecom", new_tag="china_unicom",
            as_path=(4837, 131279), evidence=("x" * 300, str(n))))
    if not writer.flush(30):
        sys.exit(3)
    print(n, flush=True)
"""


@pytest.mark.parametrize("kill_after", [25, 300, 1000])
def test_sigkill_mid_write_keeps_committed_rows(tmp_path: Path, kill_after: int) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stdout is not None
    committed = 0
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= kill_after:
                break
        # It is writing the next batches right now: kill it without warning.
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert committed >= kill_after

    # A read-only reader first (what `nkprobe history` does right after a crash).
    with HistoryReader(str(state)) as reader:
        seen = reader.changes()
    assert len(seen) >= committed
    assert [int(c.evidence[1]) for c in seen] == list(range(1, len(seen) + 1))  # no hole, no duplicate

    conn = sqlite3.connect(state / "history.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    store = HistoryStore(str(state))
    store.open()  # the agent's restart: quick_check passes, nothing is moved aside
    assert store.corrupt_files == []
    assert store.count() >= committed
    store.close()
