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


def test_version_imports_nothing_but_the_package() -> None:
    # `nkprobe --version` is what a package check and a supervisor run most: no parser, no logging.
    code = (
        "import sys\n"
        "from agent import cli\n"
        "assert cli.main(['--version']) == 0\n"
        "print(sorted(m for m in ('logging', 'agent.errors', 'agent.config') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("nkprobe ") and lines[1] == "[]"
