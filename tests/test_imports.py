"""Every module of agent/ imports cleanly without root and without side effects, so that pytest's
--doctest-modules over agent/ (pyproject.toml) can collect each of them on any machine."""

from __future__ import annotations

import ast
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


# What `nkprobe run` must never load: scapy (a test oracle), icmplib (`nkprobe ping` without CAP_NET_RAW
# only), pyroute2 (the lab; the local-network watch has a netlink socket of its own, agent.net.rtnetlink)
# and prometheus_client (the tests' oracle and the fleet simulator's; the agent's exposition is its own,
# agent.exporter.exposition). Each would cost a Pi Zero megabytes and start-up time (`import pyroute2`
# alone: 23 MiB; prometheus_client with what it imports: 0.6 MiB).
NOT_ON_THE_AGENTS_PATH = frozenset({"scapy", "icmplib", "pyroute2", "prometheus_client"})


def run_path_modules(start: str = "agent.commands.run") -> tuple[set[str], set[str]]:
    """Every agent module `start` can import, following every import statement of each (module level and
    inside functions alike, so lazy imports count), and the top-level packages outside agent/ they name."""
    ours: set[str] = set()
    theirs: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        path = REPO / Path(*name.split("."))
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not file.is_file():
            continue  # `from agent.x import name` where name is not a module
        ours.add(name)
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # parent packages
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for imported in names:
                if imported.split(".")[0] == "agent":
                    todo.append(imported)
                else:
                    theirs.add(imported.split(".")[0])
    return ours, theirs


def test_the_agents_path_imports_none_of_the_heavy_packages() -> None:
    ours, theirs = run_path_modules()
    assert {"agent.agent", "agent.net.localnet", "agent.net.rtnetlink", "agent.exporter.webconfig"} <= ours
    assert not any(name.startswith("agent.lab") for name in ours), sorted(ours)
    assert not NOT_ON_THE_AGENTS_PATH & theirs, sorted(NOT_ON_THE_AGENTS_PATH & theirs)
    assert {"sqlite3", "yaml", "bcrypt"} <= theirs  # the walk sees lazy imports too
    # And at run time: importing all of them loads none of the three (nor anything that imports them).
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(ours)!r}: importlib.import_module(name)\n"
        f"print(sorted(set({sorted(NOT_ON_THE_AGENTS_PATH)!r}) & {{m.split('.')[0] for m in sys.modules}}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
