"""deploy/central/setup.sh hashes passwords with htpasswd, else Python's bcrypt module, else says what to
install: each step of the chain, alone on PATH, gives a bcrypt hash of the very password (spaces, `$`,
backslashes) that Prometheus' web config accepts. Python's crypt module is no step (gone in 3.13)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from tests.support.deployhelp import CENTRAL, need_tool

PASSWORD = r"a b$c\d 'e\""

# The functions die() and bcrypt() of setup.sh, run alone (setup.sh itself would create secrets/).
RUN_HASH = """source <(sed -n -e '/^die()/p' -e '/^bcrypt() {/,/^}/p' "$SETUP"); bcrypt "$PW" """


def hash_with(tmp_path: Path, tools: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """setup.sh's bcrypt() with only `tools` (name -> path) and the shell's basics on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    basics = {name: shutil.which(name) for name in ("sed", "tr", "cat")}
    for name, path in {**basics, **tools}.items():
        assert path is not None, name
        (bin_dir / name).symlink_to(path)
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, "-c", RUN_HASH], capture_output=True, text=True, timeout=60,
        env={"PATH": str(bin_dir), "SETUP": str(CENTRAL / "setup.sh"), "PW": PASSWORD},
    )  # fmt: skip


def assert_bcrypt_of_password(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(("$2y$10$", "$2b$10$")) and "\n" not in proc.stdout, proc.stdout
    assert bcrypt.checkpw(PASSWORD.encode(), proc.stdout.encode())


def test_htpasswd_first(tmp_path: Path) -> None:
    assert_bcrypt_of_password(hash_with(tmp_path, {"htpasswd": need_tool("htpasswd")}))


def test_python_bcrypt_without_htpasswd(tmp_path: Path) -> None:
    # This interpreter has bcrypt (a runtime dependency of the agent); python3-bcrypt gives the system's.
    # A script, not a symlink: a venv's interpreter finds its packages through the path it is run by.
    python = tmp_path / "python3-with-bcrypt"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    assert_bcrypt_of_password(hash_with(tmp_path, {"python3": str(python)}))


@pytest.mark.parametrize("python", ["none", "without bcrypt"])
def test_neither_is_one_clear_error(tmp_path: Path, python: str) -> None:
    tools: dict[str, str] = {}
    if python != "none":
        fake = tmp_path / "python3-no-bcrypt"
        fake.write_text("#!/bin/sh\nexit 1\n")  # `import bcrypt` fails
        fake.chmod(0o755)
        tools["python3"] = str(fake)
    proc = hash_with(tmp_path, tools)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "setup.sh: no bcrypt tool: apt-get install apache2-utils (htpasswd) or python3-bcrypt"
    )
