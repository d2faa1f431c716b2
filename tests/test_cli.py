"""The CLI frame: version, exit codes, one-line errors."""

import subprocess
import sys

from agent import __version__
from agent.cli import main


def test_version_flag_prints_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"nkprobe {__version__}"


def test_unknown_command_is_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--help" in proc.stderr


def test_no_command_is_usage_error() -> None:
    assert main([]) == 2
