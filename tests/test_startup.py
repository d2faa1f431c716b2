"""What keeps `nkprobe trace` quick to start and to exit (issue 25; bench/startup.py measures it)."""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_target_check_comes_before_the_engine_and_the_parser_needs_no_shutil() -> None:
    # The resolver check starts once the target is allowed, while the engine's modules (asyncio with
    # them) load; argparse would import shutil for the terminal's width; ctypes is for setns on 3.11.
    code = (
        "import sys\n"
        "from agent import cli\n"
        "cli.build_parser(only='trace')[0].parse_args(['trace', '175.45.176.71'])\n"
        "from agent.commands._probing import config_and_target\n"
        "from agent.classify import rdns\n"
        "config_and_target(None, '175.45.176.71')\n"
        "early = sorted(m for m in ('asyncio', 'shutil', 'ctypes', 'agent.net.engine') if m in sys.modules)\n"
        "import agent.probers.base\n"
        "print(early, 'asyncio' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "True"]


@pytest.mark.parametrize("columns", [None, "100", "0", "wide"])
def test_the_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    from agent import cli

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setenv("LINES", "40")  # shutil asks the terminal only when one of the two is unset
    assert cli._columns() == shutil.get_terminal_size().columns


def test_a_command_builds_only_its_own_parser() -> None:
    from agent import cli

    parser, modules = cli.build_parser(only="trace")
    assert list(modules) == ["trace"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["trace"]
    everything, none = cli.build_parser(only="")
    sub = next(a for a in everything._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS) and none == {}


def test_the_collector_is_off_for_the_command_and_back_after_it() -> None:
    from agent.commands import trace

    assert gc.isenabled()
    with pytest.raises(RuntimeError), trace.collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("the command failed")
    assert gc.isenabled() and trace._freeze_registered
    gc.disable()  # a caller that had it off keeps it off
    try:
        with trace.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
