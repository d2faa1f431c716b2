"""`nkprobe trace` run inside the lab's vantage namespace, and what its JSON says: shared by
tests/lab/test_trace_lab.py and test_trace_rules_lab.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from agent.lab.info import LabInfo

PROTOCOLS = ("icmp", "udp", "tcp")


def nkprobe(lab: LabInfo, *args: str, prefix: tuple[str, ...] = ()) -> list[str]:
    """The command line that runs nkprobe inside the lab's vantage namespace (never elsewhere)."""
    return ["ip", "netns", "exec", lab.vantage_ns, *prefix, sys.executable, "-m", "agent", *args]


def trace_cmd(lab: LabInfo, target: str, *extra: str, config: Path | None = None) -> list[str]:
    cfg = str(config or lab.config_file)
    return nkprobe(lab, "trace", target, "--config", cfg, "--json", "--no-dns", *extra)


def hop_list(result: dict[str, Any]) -> tuple[str | None, ...]:
    """The first answering address of each hop, None for a hop without replies."""
    hops = []
    for hop in result["result"]:
        addresses = [r["from"] for r in hop["result"] if "from" in r]
        hops.append(addresses[0] if addresses else None)
    return tuple(hops)


def lab_config(lab: LabInfo, tmp_path: Path, **changes: str) -> Path:
    """A copy of the lab's config with some `key = value` lines changed."""
    lines = []
    for line in lab.config_file.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {changes.pop(key)}" if key in changes else line)
    text = "\n".join(lines) + "\n"
    for key, value in changes.items():  # keys the lab's config does not set: [trace] ones
        text = text.replace("[trace]\n", f"[trace]\n{key} = {value}\n")
    config = tmp_path / "lab.toml"
    config.write_text(text)
    return config
