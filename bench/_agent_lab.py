"""Shared by the agent benchmarks: a lab of their own (brought up if absent) and a results writer."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.lab import build, info, scenario
from agent.lab.info import LabInfo

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@contextmanager
def bench_lab(prefix: str) -> Iterator[LabInfo]:
    """The lab with `prefix`: reused if up (and left up), else built and taken down at the end."""
    existing = build.existing(prefix)
    if existing:
        yield info.load(prefix)
        return
    lab = build.up(prefix, scenario.load())
    try:
        yield lab
    finally:
        build.down(prefix)


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, load average {load:.1f}"
    )


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the `### title` subsection under `## Agent`, keeping every other section."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if "\n## Agent\n" not in text:
        text = text.rstrip("\n") + "\n\n## Agent\n"
    head, _, rest = text.partition("\n## Agent\n")
    # The Agent section runs to the next "## " heading.
    match = re.search(r"^## ", rest, flags=re.M)
    agent, tail = (rest[: match.start()], rest[match.start() :]) if match else (rest, "")
    block = f"### {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^### {re.escape(title)}\n.*?(?=^### |\Z)", flags=re.M | re.S)
    if pattern.search(agent):
        agent = pattern.sub(lambda _m: block, agent)
    else:
        agent = (agent.rstrip("\n") + "\n\n" if agent.strip() else "\n") + block
    path.write_text(head + "\n## Agent\n" + agent.rstrip("\n") + "\n" + ("\n" + tail if tail else ""))
