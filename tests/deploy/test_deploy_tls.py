"""Debian's real Prometheus scrapes the real agent over TLS with basic auth, as a central or local Prometheus
would with the web config an operator writes (README "Metrics", agent/exporter/webconfig.py).

The agent runs in the lab (probe sockets in the vantage namespace, so nothing leaves this machine) with
`--web.config.file` naming an exporter-toolkit file: a server certificate signed by a CA made here with
openssl, and one bcrypt user. Prometheus gets three jobs on the same target, its scrape_config written
with PyYAML: the right CA and password (up, samples arrive), a wrong password (down: 401), and no CA
(down: the certificate is not trusted). The web config is also read with PyYAML and compared with the
agent's own reader, which is what the agent actually used.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.exporter.webconfig import read_yaml
from agent.lab.info import LabInfo
from tests.support.agent_harness import agent_config, free_port, wait_for
from tests.support.webtls import PASSWORD, USER, bcrypt_hash, make_certificates

pytestmark = pytest.mark.lab


def prometheus_config(target: str, ca: Path) -> dict[str, Any]:
    def job(name: str, password: str, tls: dict[str, str]) -> dict[str, Any]:
        return {
            "job_name": name,
            "scheme": "https",
            "tls_config": tls,
            "basic_auth": {"username": USER, "password": password},
            "static_configs": [{"targets": [target]}],
        }

    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            job("good", PASSWORD, {"ca_file": str(ca)}),
            job("wrong_password", PASSWORD + "!", {"ca_file": str(ca)}),
            job("untrusted", PASSWORD, {}),
        ],
    }


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)
    except OSError:
        return None


def test_prometheus_scrapes_the_agent_over_tls_with_basic_auth(lab: LabInfo, tmp_path: Path) -> None:
    make_certificates(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        "# exporter-toolkit web config, as an operator writes it for node_exporter\n"
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS12\n"
        f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n"
    )
    # The agent's reading and PyYAML's default one agree on the file the agent is about to use.
    assert read_yaml(web.read_text()) == yaml.safe_load(web.read_text())

    port = free_port()
    config = agent_config(
        lab, tmp_path, state_dir=tmp_path / "state", targets=("198.19.176.10",), max_pps=200
    )
    log_path = tmp_path / "agent.log"
    cmd = [sys.executable, "-m", "agent", "run", "--config", str(config), "--netns", lab.vantage_ns,
           "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web)]  # fmt: skip
    with open(log_path, "ab") as log:
        agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    prom: subprocess.Popen[bytes] | None = None
    try:
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))

        def agent_status() -> int | None:
            assert agent.poll() is None, log_path.read_text()
            try:
                urllib.request.urlopen(f"https://127.0.0.1:{port}/-/healthy", timeout=2, context=trusted)
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None
            return 200

        wait_for(lambda: agent_status() == 401, 20, f"agent not serving TLS: {log_path.read_text()}")

        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(f"127.0.0.1:{port}", tmp_path / "ca.pem"))
        )
        prom_log = tmp_path / "prometheus.log"
        with open(prom_log, "ab") as plog:
            prom = subprocess.Popen(
                ["/usr/bin/prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=plog, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        api = f"http://127.0.0.1:{prom_port}/api/v1"

        def targets() -> dict[str, dict[str, Any]]:
            body = get_json(api + "/targets")
            active = body["data"]["activeTargets"] if body else []
            return {t["labels"]["job"]: t for t in active if t["health"] != "unknown"}

        wait_for(
            lambda: len(targets()) == 3,
            30,
            f"Prometheus did not scrape all three jobs: {prom_log.read_text()[-2000:]}",
        )
        health = targets()
        assert health["good"]["health"] == "up", health["good"]
        assert health["wrong_password"]["health"] == "down"
        assert "401" in health["wrong_password"]["lastError"], health["wrong_password"]
        assert health["untrusted"]["health"] == "down"
        assert "certificate" in health["untrusted"]["lastError"], health["untrusted"]

        # Samples arrive through the good job, and only through it.
        def agent_info() -> list[dict[str, Any]]:
            query = urllib.parse.urlencode({"query": "nkprobe_agent_info"})
            body = get_json(f"{api}/query?{query}")
            return body["data"]["result"] if body else []

        wait_for(lambda: bool(agent_info()), 15, "no nkprobe_agent_info in Prometheus")
        series = agent_info()
        assert [s["metric"]["job"] for s in series] == ["good"], series
        assert series[0]["metric"]["agent"].startswith("lab-"), series
    finally:
        if prom is not None:
            os.killpg(prom.pid, signal.SIGTERM)
            prom.wait(15)
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGTERM)
        code = agent.wait(15)
    assert code == 0, log_path.read_text()
