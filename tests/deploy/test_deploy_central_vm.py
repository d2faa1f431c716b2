"""deploy/central/victoriametrics/: the compose file parses and mounts what exists, setup.sh writes a
vmauth config that Debian's vmauth serves (agents write only, Grafana reads only, wrong passwords get
401), vmagent pushes through it into VictoriaMetrics, and vmalert accepts the rule files. Loopback only."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.fleet import vm
from tests.support.deployhelp import CENTRAL, DASHBOARDS, need_tool, write_receiver_secrets

STACK = CENTRAL / "victoriametrics"


def test_compose_file_parses_and_mounts_existing_paths() -> None:
    import yaml  # PyYAML: a test dependency (pyproject [test]), never a skip

    compose = yaml.safe_load((STACK / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"victoriametrics", "vmauth", "vmalert", "alertmanager", "grafana"}
    assert "-notifier.url=http://alertmanager:9093" in services["vmalert"]["command"]
    assert "ports" not in services["victoriametrics"]  # reachable through vmauth only
    assert services["vmauth"]["ports"] == ["8427:8427"]
    assert "-rule=/etc/rules/*.rules.yml" in services["vmalert"]["command"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("."):
                assert source in compose["volumes"], source
            elif source not in ("./secrets", "./secrets/alertmanager"):  # setup.sh's and the operator's
                assert (STACK / source).exists(), f"{source} mounted but missing"
    assert (STACK / "../rules").resolve() == (CENTRAL / "rules").resolve()
    assert (STACK / "../../../dashboards").resolve() == DASHBOARDS.resolve()


def test_setup_is_shellcheck_clean() -> None:
    proc = subprocess.run([need_tool("shellcheck"), str(STACK / "setup.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_vmalert_accepts_the_rules_and_rejects_a_broken_one(tmp_path: Path) -> None:
    tool = need_tool("vmalert")
    rules = str(CENTRAL / "rules" / "*.rules.yml")
    ok = subprocess.run([tool, "-dryRun", f"-rule={rules}"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - record: y\n        expr: sum by (a (b)\n")
    broken = subprocess.run([tool, "-dryRun", f"-rule={bad}"], capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0


def _status(url: str, user: str, password: str, data: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_vmauth_lets_agents_write_and_grafana_read(tmp_path: Path) -> None:
    need_tool("vmauth")
    need_tool("vmagent")
    need_tool("victoria-metrics")
    copy = tmp_path / "stack"
    shutil.copytree(STACK, copy, ignore=shutil.ignore_patterns("secrets", ".env"))
    # setup.sh reads ../alertmanager.yml; the receiver secrets as the operator writes them.
    shutil.copy(CENTRAL / "alertmanager.yml", tmp_path / "alertmanager.yml")
    write_receiver_secrets(copy / "secrets")
    central = vm.start_victoria_metrics(tmp_path / "vm")
    procs: list[vm.Service] = [central]
    try:
        env = {**os.environ, "UPSTREAM": central.url, "CENTRAL_URL": "https://central.invalid/api/v1/write"}
        first = subprocess.run(
            ["bash", "setup.sh", "--no-start"], cwd=copy, env=env, capture_output=True, text=True
        )
        assert first.returncode == 0, first.stderr
        add = subprocess.run(
            ["bash", "setup.sh", "add-agent", "pi-1"], cwd=copy, env=env, capture_output=True, text=True
        )
        assert add.returncode == 0, add.stderr
        assert "--central-url https://central.invalid/api/v1/write --username pi-1 --password " in add.stdout
        password = add.stdout.rsplit("--password ", 1)[1].strip()
        secrets = copy / "secrets"
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
        assert stat.S_IMODE((secrets / "vmauth.yml").stat().st_mode) == 0o600
        grafana = (secrets / "grafana_password").read_text()
        port = vm.free_port()
        auth = vm.Service(
            "vmauth",
            [
                need_tool("vmauth"),
                f"-auth.config={secrets / 'vmauth.yml'}",
                f"-httpListenAddr=127.0.0.1:{port}",
            ],
            port,
            tmp_path / "vmauth.log",
        )
        procs.append(auth)
        auth.wait_healthy()
        # The agent's forwarder pushes through vmauth with its login, as install.sh sets it up.
        (tmp_path / "pw").write_text(password)
        pusher = vm.Service(
            "vmagent",
            [
                need_tool("vmagent"),
                f"-httpListenAddr=127.0.0.1:{(p := vm.free_port())}",
                f"-remoteWrite.url={auth.url}/api/v1/write",
                "-remoteWrite.basicAuth.username=pi-1",
                f"-remoteWrite.basicAuth.passwordFile={tmp_path / 'pw'}",
                f"-remoteWrite.tmpDataPath={tmp_path / 'buffer'}",
            ],
            p,
            tmp_path / "vmagent.log",
        )
        procs.append(pusher)
        pusher.wait_healthy()
        now = int(time.time() * 1000)
        vm.push(pusher, f'nkprobe_agent_info{{agent="pi-1"}} 1 {now}\n'.encode())
        vm.wait_rows(central, 1, timeout=30)
        query = f"{auth.url}/api/v1/query?query=nkprobe_agent_info"
        assert _status(query, "grafana", grafana) == 200
        assert vm.query(central, 'nkprobe_agent_info{agent="pi-1"}', now / 1000)
        assert _status(query, "pi-1", password) != 200  # agents cannot read
        assert _status(f"{auth.url}/api/v1/write", "grafana", grafana, b"") != 204  # Grafana cannot write
        # vmauth 1.79 answers 400 for an unknown login, later versions 401: never proxied, anyway.
        assert _status(query, "grafana", "wrong") in (400, 401)
        removed = subprocess.run(
            ["bash", "setup.sh", "remove-agent", "pi-1"], cwd=copy, env=env, capture_output=True
        )
        assert removed.returncode == 0
        assert "pi-1" not in (secrets / "vmauth.yml").read_text()
    finally:
        for svc in reversed(procs):
            svc.stop()
