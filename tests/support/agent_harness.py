"""Running `nkprobe run` against the lab from a test or a benchmark: config, process, scrapes, Prometheus.

The agent's probe sockets live in the lab's vantage namespace (`--netns`), its HTTP server on 127.0.0.1
of this namespace: nothing is ever sent from here to anything but loopback and the lab.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agent.lab.info import LabInfo
from tests.support.waiting import wait_for

__all__ = [
    "FLIP_PREFIX",
    "FLIP_TARGETS",
    "TAGS",
    "Agent",
    "Prometheus",
    "agent_config",
    "changes",
    "free_port",
    "history",
    "lab_flip",
    "scrape_jobs",
    "stop_group",
    "tag_of",
    "wait_for",
    "wait_tags",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# The /24 that `lab_flip` moves between the upstreams, its two targets, and every tag the lab can show.
FLIP_PREFIX = "198.19.179.0/24"
FLIP_TARGETS = ("198.19.179.10", "198.19.179.20")
TAGS = ("china_unicom", "transtelecom", "other", "unknown")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string for these values
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """Enough TOML for an agent config: tables of scalars and lists, and arrays of tables."""
    lines: list[str] = []
    for name, table in data.items():
        if isinstance(table, list):
            for item in table:
                lines += [f"[[{name}]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items()), ""]
        else:
            lines += [f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items()), ""]
    return "\n".join(lines)


def agent_config(
    lab: LabInfo,
    directory: Path,
    *,
    state_dir: Path,
    targets: Iterable[str] | None = None,
    ping_interval_s: float = 0.5,
    trace_interval_s: float = 30.0,
    **agent: Any,
) -> Path:
    """The lab's own config.toml with test settings (`agent` overrides [agent] keys); its path."""
    data = tomllib.loads(lab.config_file.read_text())
    data["agent"]["state_dir"] = str(state_dir)
    data["agent"].update(agent)
    if targets is not None:
        keep = set(targets)
        data["targets"] = [t for t in data["targets"] if t["address"] in keep]
    data.setdefault("ping", {})["interval_s"] = ping_interval_s
    data.setdefault("trace", {})["interval_s"] = trace_interval_s
    path = directory / "agent.toml"
    path.write_text(dump_toml(data))
    return path


class Agent:
    """`python -m agent run` in its own process group, HTTP on a free loopback port; its probe sockets
    in the lab's vantage namespace, or in `netns` (another vantage host a test added to the lab)."""

    def __init__(self, lab: LabInfo, config: Path, log: Path, netns: str | None = None) -> None:
        self.lab, self.config, self.log_path = lab, config, log
        self.netns = netns or lab.vantage_ns
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Agent:
        cmd = [sys.executable, "-m", "agent", "run", "--config", str(self.config),
               "--netns", self.netns, "--web.listen-address", f"127.0.0.1:{self.port}"]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.healthy, timeout, f"agent on {self.url} not healthy; log: {self.log()}")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
        try:
            with urllib.request.urlopen(self.url + "/-/healthy", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def scrape(self) -> Samples:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        out: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float:
        return self.scrape()[(name, frozenset(labels.items()))]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout)


class Prometheus:
    """Debian's /usr/bin/prometheus scraping one target every second, storage in a temp directory."""

    def __init__(self, directory: Path, target: str, binary: str = "/usr/bin/prometheus") -> None:
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: nkprobe\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log_path = directory / "prometheus.log"
        cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{self.port}"]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
        except OSError:
            return []
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        stop_group(self.proc)


def scrape_jobs(agents: dict[str, Agent]) -> list[dict[str, Any]]:
    """Prometheus scrape jobs for lab agents on loopback, one per agent, as a fleet's central server sees
    them: `agent` and `instance` set to the agent's name."""
    return [
        {
            "job_name": f"nkprobe-{name}",
            "honor_labels": True,
            "static_configs": [{"targets": [f"127.0.0.1:{agent.port}"], "labels": {"agent": name}}],
            "relabel_configs": [{"target_label": "instance", "replacement": name}],
        }
        for name, agent in agents.items()
    ]


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End a server a test started in its own process group: SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def lab_flip(lab: LabInfo, upstream: str) -> None:
    """`nkprobe lab flip UPSTREAM` for this lab (its prefix through the environment)."""
    env = {**os.environ, "NKPROBE_LAB_PREFIX": lab.prefix}
    subprocess.run([sys.executable, "-m", "agent", "lab", "flip", upstream], env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip


def history(config: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "agent", "history", "--config", str(config), "--json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


def tag_of(agent: Agent, target: str) -> str | None:
    """The tag `agent` exports for `target` now (None: none yet)."""
    samples = agent.scrape()
    prefix = target.rsplit(".", 1)[0] + ".0/24"
    for tag in TAGS:
        key = (
            "nkprobe_path_upstream",
            frozenset({"target": target, "prefix": prefix, "upstream": tag}.items()),
        )
        if samples.get(key) == 1.0:
            return tag
    return None


def changes(agent: Agent, target: str) -> float:
    """The path changes `agent` has counted for `target` of the flip /24."""
    return agent.value("nkprobe_path_changes_total", target=target, prefix=FLIP_PREFIX)


def wait_tags(agent: Agent, tag: str, timeout: float = 30.0) -> float:
    """Wait until `agent` tags both flip targets `tag`."""
    return wait_for(
        lambda: all(tag_of(agent, t) == tag for t in FLIP_TARGETS),
        timeout,
        f"flip targets not {tag} within {timeout} s; agent log: {agent.log()}",
    )
