"""Every module of agent/ imports cleanly without root and without side effects, so that pytest's
--doctest-modules over agent/ (pyproject.toml) can collect each of them on any machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, pkgutil, agent
# agent.__main__ is `python -m agent` itself (pytest's doctest collection skips it too).
names = [m.name for m in pkgutil.walk_packages(agent.__path__, "agent.") if m.name != "agent.__main__"]
for name in names:
    importlib.import_module(name)
import sys
# Not runtime dependencies (README "Dependencies and licences"): no module of agent/ may pull them in.
assert not {"scapy", "icmplib"} & {m.split(".")[0] for m in sys.modules}, "agent/ imports scapy or icmplib"
print(len(names))
"""


def test_every_agent_module_imports_unprivileged_without_side_effects(tmp_path: Path) -> None:
    command = [sys.executable, "-c", IMPORT_ALL]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # As nobody with no capabilities: a module that needs root at import time fails here, and none
        # can make a namespace, a link or a file outside the cwd (other sessions' labs come and go, so
        # /run/netns itself is no evidence).
        drop = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]
        command = ["setpriv", *drop, *command]
    proc = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 60  # walked the whole package, not an empty path
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory
