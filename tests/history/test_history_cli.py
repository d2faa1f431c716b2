"""`nkprobe history`: selection by address, /24 or name, --since, --json, no history yet, read-only."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.commands import history as history_command
from agent.errors import NkprobeError
from agent.history import HistoryReader, HistoryStore, HistoryWriter, parse_duration
from tests.support.histhelp import change

NOW = time.time()
HOUR = 3600.0


def make_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        """
[agent]
state_dir = "state"
[[targets]]
address = "175.45.177.10"
name = "web-177"
[[targets]]
address = "175.45.178.129"
"""
    )
    return path


def fill(state: Path) -> None:
    store = HistoryStore(str(state))
    store.insert(
        [
            change(0, target="175.45.177.10", time=NOW - 30 * HOUR),
            change(1, target="175.45.178.129", time=NOW - 20 * HOUR),
            change(2, target="175.45.177.10", time=NOW - 5 * HOUR),
            change(3, target="175.45.177.10", time=NOW - 1 * HOUR),
        ]
    )
    store.close()


def main(argv: list[str]) -> int:
    """What agent.cli.main does for this command (imported directly: see test_cli_end_to_end)."""
    parser = argparse.ArgumentParser(prog="nkprobe history")
    history_command.add_arguments(parser)
    try:
        return history_command.run(parser.parse_args(argv))
    except NkprobeError as exc:
        print(f"nkprobe history: {exc}", file=sys.stderr)
        return exc.exit_code


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_end_to_end(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    fill(tmp_path / "state")
    cmd = [sys.executable, "-m", "agent", "history", "web-177", "--config", str(config), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3
    proc = subprocess.run([*cmd, "--since", "soon"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nkprobe history: --since: not a duration")


def test_table_lists_all_changes_oldest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path)
    fill(tmp_path / "state")
    code, out, err = run(capsys, "--config", str(config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "TARGET", "PREFIX", "FROM", "TO", "BORDER", "AS", "PATH"]
    assert "175.45.177.10 (web-177)" in lines[1] and "china_unicom" in lines[1] and "transtelecom" in lines[1]
    assert "175.45.178.129" in lines[2]
    assert "3356 4837 ? 131279" in lines[2]
    assert lines[-1] == "4 changes for any target"


@pytest.mark.parametrize("selector", ["175.45.177.0/24", "175.45.177.10", "web-177"])
def test_select_by_prefix_address_or_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], selector: str
) -> None:
    config = make_config(tmp_path)
    fill(tmp_path / "state")
    code, out, _ = run(capsys, selector, "--config", str(config), "--json")
    assert code == 0
    data = json.loads(out)
    assert [d["target"] for d in data] == ["175.45.177.10"] * 3
    assert [d["time"] for d in data] == sorted(d["time"] for d in data)


def test_since_and_the_tag_in_force_when_the_window_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Which way did 175.45.177.0/24 go last night?" """
    config = make_config(tmp_path)
    fill(tmp_path / "state")
    code, out, _ = run(capsys, "175.45.177.0/24", "--config", str(config), "--since", "12h")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("as of ") and "175.45.177.10 (web-177) on transtelecom (since " in lines[0]
    assert lines[-1] == "2 changes for 175.45.177.0/24 in the last 12h"
    code, out, _ = run(capsys, "175.45.177.0/24", "--config", str(config), "--since", "12h", "--json")
    data = json.loads(out)
    assert [d["new"] for d in data] == ["transtelecom", "china_unicom"]
    assert set(data[0]) >= {"time", "agent", "target", "prefix", "old", "new", "as_path", "hops", "evidence"}


def test_no_changes_in_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path)
    fill(tmp_path / "state")
    code, out, _ = run(capsys, "175.45.178.129", "--config", str(config), "--since", "90s")
    assert code == 0
    assert out.splitlines()[-1] == "no path changes recorded for 175.45.178.129 in the last 90s"


def test_no_history_yet_is_said_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path)
    code, out, err = run(capsys, "--config", str(config))
    assert code == 0 and out == ""
    assert err.startswith(f"no path history yet: {tmp_path / 'state' / 'history.db'} does not exist")
    code, out, err = run(capsys, "--config", str(config), "--json")
    assert json.loads(out) == []


def test_an_empty_database_is_no_history_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path)
    (tmp_path / "state").mkdir()
    sqlite3.connect(tmp_path / "state" / "history.db").close()
    code, _, err = run(capsys, "--config", str(config))
    assert code == 0 and "holds no table" in err


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path)
    fill(tmp_path / "state")
    code, _, err = run(capsys, "kcna", "--config", str(config))
    assert code == 2 and len(err.splitlines()) == 1 and "target name (web-177)" in err
    code, _, err = run(capsys, "--config", str(config), "--since", "yesterday")
    assert code == 2 and len(err.splitlines()) == 1 and "90s, 15m, 12h or 7d" in err


def test_reading_never_writes(tmp_path: Path) -> None:
    fill(tmp_path)
    db = tmp_path / "history.db"
    os.chmod(db, 0o444)
    before = db.read_bytes()
    with HistoryReader(str(tmp_path)) as reader:
        assert len(reader.changes()) == 4
    assert db.read_bytes() == before


def _as_nobody(state: str) -> int:
    """Fork, drop to nobody, read the history; returns the number of rows the child saw (or -1)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with HistoryReader(state) as reader:
                n = len(reader.changes())
            os.write(write_fd, str(n).encode())
        except BaseException as exc:
            os.write(write_fd, f"error {exc}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        answer = fh.read()
    os.waitpid(pid, 0)
    assert answer.lstrip("-").isdigit(), answer
    return int(answer)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_another_user_reads_while_the_agent_writes_and_after(tmp_path: Path) -> None:
    state = tempfile.mkdtemp(prefix="nkprobe-hist-", dir="/tmp")  # tmp_path is root-only (0700)
    try:
        os.chmod(state, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        # Stepped, not threaded: forking while another thread may hold an SQLite mutex is unsafe.
        writer = HistoryWriter(state)
        for i in range(3):
            writer.submit(change(i))
        assert writer.step()
        assert os.path.exists(os.path.join(state, "history.db-wal"))  # the agent is running
        assert _as_nobody(state) == 3
        writer.close()
        # Clean shutdown removed -wal/-shm; nobody cannot create them in a root-owned directory.
        assert not os.path.exists(os.path.join(state, "history.db-wal"))
        assert _as_nobody(state) == 3
    finally:
        shutil.rmtree(state)


def test_parse_duration_units() -> None:
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("45") == 45
    for bad in ("", "0s", "-5m", "5x", "m5", "1h 30m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
