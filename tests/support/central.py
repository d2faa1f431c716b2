"""The central Prometheus as deploy/central/setup.sh leaves it, run directly on loopback (or in a lab
namespace), and the processes a deploy test starts: shared by tests/deploy/test_deploy_e2e.py and
test_deploy_forwarder.py."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.net.netns import call_in_netns
from tests.support.deployhelp import CENTRAL, need_tool, write_receiver_secrets
from tests.support.waiting import wait_for

START_TIMEOUT_S = 30.0
ARRIVAL_TIMEOUT_S = 45.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, netns: str | None = None, headers: dict[str, str] | None = None) -> bytes:
    """GET `url` from network namespace `netns` (None: this one); HTTPError for an HTTP error status."""

    def fetch() -> bytes:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as response:
            body: bytes = response.read()
            return body

    return call_in_netns(netns, fetch)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, netns: str | None = None) -> None:
    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{url}: process exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            get(url, netns)
        except urllib.error.HTTPError:
            return True  # it answers (401 is an answer)
        except OSError:
            return False
        return True

    wait_for(answers, START_TIMEOUT_S, lambda: f"{url} did not come up: {log.read_text()[-2000:]}")


@dataclass
class Central:
    port: int
    grafana_password: str
    agent_user: str
    agent_password: str
    # How the fixture started it, so a test can cut it and bring it back on the same port and storage.
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    netns: str | None = None  # the network namespace it listens in (None: this one)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(params)
        token = base64.b64encode(f"grafana:{self.grafana_password}".encode()).decode()
        body = json.loads(get(url, self.netns, {"Authorization": f"Basic {token}"}))
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self, promql: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float = ARRIVAL_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        box: dict[str, list[dict[str, Any]]] = {"result": []}

        def satisfied() -> bool:
            box["result"] = self.query(promql)
            return ok(box["result"])

        wait_for(satisfied, timeout, lambda: f"{promql}: never satisfied, last result {box['result']}", 0.5)
        return box["result"]


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], log: Path, cwd: Path | None = None, netns: str | None = None, umask: int = -1
    ) -> subprocess.Popen[bytes]:
        """`args` in its own process, in network namespace `netns` if given (`ip netns exec` execs the
        command itself, so the pid is the program's)."""
        if netns is not None:
            args = ["ip", "netns", "exec", netns, *args]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, umask=umask
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


def start_central(tmp_path: Path, procs: Processes, netns: str | None = None) -> Central:
    """deploy/central as setup.sh leaves it, with Prometheus run directly instead of in docker; in
    network namespace `netns` if given (then on its own port, localhost:9090, as in its config)."""
    prometheus = need_tool("prometheus")
    copy = tmp_path / "central"
    shutil.copytree(CENTRAL, copy, ignore=shutil.ignore_patterns("secrets", ".env"))
    write_receiver_secrets(copy / "secrets")  # setup.sh insists on them (deploy/README.md "Alerts")
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
    port = 9090 if netns is not None else free_port()
    config = (copy / "prometheus.yml").read_text()
    config = (
        config.replace("/etc/prometheus/secrets/", f"{copy}/secrets/")
        .replace("localhost:9090", f"127.0.0.1:{port}")
        # No Alertmanager here (test_deploy_fleet_alerts_lab runs one): a closed loopback port, so an
        # alert that fired would never make Prometheus resolve the compose service's name.
        .replace("alertmanager:9093", "127.0.0.1:9")
        # Rules every 2 s instead of every minute, so the tests see recorded series within seconds.
        .replace("evaluation_interval: 1m", "evaluation_interval: 2s")
    )
    assert "alertmanager:9093" not in config and "127.0.0.1:9" in config
    for rules in (copy / "rules").glob("*.yml"):
        rules.write_text(re.sub(r"(?m)^(\s*interval: )1m$", r"\g<1>2s", rules.read_text()))
    (copy / "prometheus.yml").write_text(config)
    log = tmp_path / "central.log"
    args = (
        prometheus,
        f"--config.file={copy / 'prometheus.yml'}",
        f"--web.config.file={copy / 'secrets' / 'web.yml'}",
        "--web.enable-remote-write-receiver",
        f"--storage.tsdb.path={tmp_path / 'central-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    )
    proc = procs.start(list(args), log, netns=netns)
    wait_http(f"http://127.0.0.1:{port}/-/ready", proc, log, netns)
    return Central(
        port=port,
        grafana_password=(copy / "secrets" / "grafana_password").read_text(),
        agent_user=match.group(1),
        agent_password=match.group(2),
        args=args,
        proc=proc,
        netns=netns,
    )
