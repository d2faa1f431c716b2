"""End to end on loopback: agent /metrics -> forwarder (Prometheus agent mode, or vmagent) -> the central
Prometheus's authenticated remote-write receiver, configured exactly as install.sh and setup.sh make
them (scrape interval shortened). Everything listens on 127.0.0.1 and talks only to itself.

With the lab up and `nkprobe run` registered, the real agent probes the lab (inside the vantage
namespace) and its path tags arrive at the central server; without them that test skips."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deployhelp import CENTRAL, REPO, FakeRoot, need_tool

START_TIMEOUT_S = 30.0
ARRIVAL_TIMEOUT_S = 45.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: process exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (401 is an answer)
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not come up: {log.read_text()[-2000:]}")


@dataclass
class Central:
    port: int
    grafana_password: str
    agent_user: str
    agent_password: str

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        request = urllib.request.Request(url)
        token = base64.b64encode(f"grafana:{self.grafana_password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.load(response)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self, promql: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float = ARRIVAL_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if ok(result):
                return result
            time.sleep(0.5)
        pytest.fail(f"{promql}: never satisfied, last result {result}")


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
            )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def central(tmp_path: Path, procs: Processes) -> Central:
    """deploy/central as setup.sh leaves it, with Prometheus run directly instead of in docker."""
    prometheus = need_tool("prometheus")
    copy = tmp_path / "central"
    shutil.copytree(CENTRAL, copy, ignore=shutil.ignore_patterns("secrets", ".env"))
    env = {**os.environ, "CENTRAL_URL": "http://127.0.0.1/api/v1/write"}
    subprocess.run(["bash", "setup.sh", "--no-start"], cwd=copy, env=env, check=True, capture_output=True)
    add = subprocess.run(
        ["bash", "setup.sh", "add-agent", "e2e-pi"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"--username (\S+) --password (\S+)", add.stdout)
    assert match, add.stdout
    port = _free_port()
    config = (copy / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/secrets/", f"{copy}/secrets/").replace(
        "localhost:9090", f"127.0.0.1:{port}"
    )
    (copy / "prometheus.yml").write_text(config)
    log = tmp_path / "central.log"
    proc = procs.start(
        [
            prometheus,
            f"--config.file={copy / 'prometheus.yml'}",
            f"--web.config.file={copy / 'secrets' / 'web.yml'}",
            "--web.enable-remote-write-receiver",
            f"--storage.tsdb.path={tmp_path / 'central-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    _wait_http(f"http://127.0.0.1:{port}/-/ready", proc, log)
    return Central(
        port=port,
        grafana_password=(copy / "secrets" / "grafana_password").read_text(),
        agent_user=match.group(1),
        agent_password=match.group(2),
    )


# The agent's real exporter over a fresh state (every label set present), served on loopback. It runs in
# its own interpreter, like the real agent, so pytest's sys.path games cannot swap the package.
FAKE_AGENT = """
import sys, time
from prometheus_client import start_http_server
from agent.exporter import build_registry
from agent.model import Target
from agent.state import State
state = State(agent_name="e2e-pi", version="0", targets=[Target("198.19.176.10"), Target("198.19.177.10")],
              ping_protocols=("icmp", "tcp"), trace_protocol="tcp",
              tags=("china_unicom", "transtelecom", "other", "unknown"))
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=build_registry(state))
while True:
    time.sleep(3600)
"""


def _start_fake_agent(tmp_path: Path, procs: Processes) -> int:
    port = _free_port()
    log = tmp_path / "fake-agent.log"
    proc = procs.start([sys.executable, "-c", FAKE_AGENT, str(port)], log, cwd=REPO)
    _wait_http(f"http://127.0.0.1:{port}/metrics", proc, log)
    return port


def _forwarder_files(tmp_path: Path, kind: str, central: Central, agent_port: int) -> tuple[Path, Path]:
    """forwarder.yml and the password file, as install.sh writes them."""
    fake = FakeRoot(tmp_path / "pi")
    proc = fake.run(
        "--name", "e2e-pi", "--central-url", central.write_url, "--username", central.agent_user,
        "--password", central.agent_password, "--forwarder", kind,
        "--agent-address", f"127.0.0.1:{agent_port}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    password = fake.path("/etc/nkprobe/remote-write-password")
    config = fake.path("/etc/nkprobe/forwarder.yml")
    text = (
        config.read_text()
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
    )
    # systemd hands the password over as a credential; here it is the file itself.
    text = text.replace("/run/credentials/nkprobe-forwarder.service/remote-write-password", str(password))
    config.write_text(text)
    return config, password


def _start_forwarder(kind: str, tmp_path: Path, procs: Processes, central: Central, agent_port: int) -> None:
    config, password = _forwarder_files(tmp_path, kind, central, agent_port)
    port = _free_port()
    log = tmp_path / f"forwarder-{kind}.log"
    if kind == "prometheus":
        args = [
            need_tool("prometheus"), "--enable-feature=agent", f"--config.file={config}",
            f"--storage.agent.path={tmp_path / 'fwd-data'}", f"--web.listen-address=127.0.0.1:{port}",
        ]  # fmt: skip
    else:
        args = [
            need_tool("vmagent"), f"-promscrape.config={config}", f"-remoteWrite.url={central.write_url}",
            f"-remoteWrite.basicAuth.username={central.agent_user}",
            f"-remoteWrite.basicAuth.passwordFile={password}",
            f"-remoteWrite.tmpDataPath={tmp_path / 'fwd-data'}",
            "-remoteWrite.flushInterval=200ms", f"-httpListenAddr=127.0.0.1:{port}",
        ]  # fmt: skip
    proc = procs.start(args, log)
    _wait_http(f"http://127.0.0.1:{port}/metrics", proc, log)


@pytest.mark.parametrize("kind", ["prometheus", "vmagent"])
def test_exporter_metrics_reach_central_with_agent_label(
    kind: str, tmp_path: Path, procs: Processes, central: Central
) -> None:
    if kind == "vmagent":
        need_tool("vmagent")
    agent_port = _start_fake_agent(tmp_path, procs)
    _start_forwarder(kind, tmp_path, procs, central, agent_port)
    got = central.wait_for('nkprobe_path_upstream{agent="e2e-pi"}', lambda r: len(r) == 8)
    assert {s["metric"]["instance"] for s in got} == {"e2e-pi"}
    assert {s["metric"]["upstream"] for s in got} == {"china_unicom", "transtelecom", "other", "unknown"}
    info = central.wait_for("nkprobe_agent_info", lambda r: len(r) == 1)
    assert info[0]["metric"]["agent"] == "e2e-pi"
    up = central.query('count by (agent) (nkprobe_target_up{agent="e2e-pi"})')
    assert up and up[0]["value"][1] == "2"


def test_remote_write_refuses_strangers(central: Central) -> None:
    request = urllib.request.Request(central.write_url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 401
    token = base64.b64encode(f"{central.agent_user}:wrong".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 401


# Runs argv[1:] with Linux's memory-deny-write-execute set (PR_SET_MDWE, kept across execve), the kernel's
# counterpart of the unit's MemoryDenyWriteExecute=yes: if the agent (Python, scapy, ctypes) needed
# writable executable memory, it would die here instead of on a volunteer's Pi. Kernels before 6.3 lack
# it: then the agent runs without.
MDWE_EXEC = """
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)
os.execv(sys.argv[1], sys.argv[1:])
"""


def _run_registered() -> bool:
    return (
        re.search(r'(?m)^\s*"run": \("agent\.commands\.run"', (REPO / "agent" / "cli.py").read_text())
        is not None
    )


@pytest.mark.lab
def test_real_agent_in_lab_reaches_central(
    tmp_path: Path, procs: Processes, central: Central, request: pytest.FixtureRequest
) -> None:
    """The real `nkprobe run`, probing the lab from its vantage namespace, through the forwarder, under
    memory-deny-write-execute as in its unit."""
    if not _run_registered():
        pytest.skip("`nkprobe run` is not registered in agent/cli.py yet")
    lab = request.getfixturevalue("lab")  # skips without root / namespaces
    agent_port = _free_port()
    log = tmp_path / "agent.log"
    config = tmp_path / "agent.toml"
    # The lab's own config, renamed so the `agent` labels agree; its state in our tmp dir.
    text = Path(lab.config_file).read_text()
    text = re.sub(r'(?m)^name = "[^"]*"', 'name = "e2e-pi"', text, count=1)
    text = re.sub(r'(?m)^state_dir = "[^"]*"', f'state_dir = "{tmp_path / "state"}"', text, count=1)
    # Trace rounds more often than the lab's default, so two agreeing rounds (hysteresis) come quickly.
    text = re.sub(r"(?m)^(\[trace\]\s*\ninterval_s = )[0-9.]+", r"\g<1>3.0", text, count=1)
    config.write_text(text)
    proc = procs.start(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-m", "agent", "run", "--config", str(config),
         "--netns", lab.vantage_ns, "--web.listen-address", f"127.0.0.1:{agent_port}"],
        log,
        cwd=REPO,
    )  # fmt: skip
    _wait_http(f"http://127.0.0.1:{agent_port}/metrics", proc, log)
    _start_forwarder("prometheus", tmp_path, procs, central, agent_port)
    # 198.19.177.0/24 is always behind the TransTeleCom-like chain in the lab.
    got = central.wait_for(
        'nkprobe_path_upstream{agent="e2e-pi", prefix="198.19.177.0/24", upstream="transtelecom"} == 1',
        lambda r: len(r) >= 1,
        timeout=120.0,  # the agent's start, two agreeing trace rounds (hysteresis), one scrape
    )
    assert got[0]["metric"]["instance"] == "e2e-pi"
