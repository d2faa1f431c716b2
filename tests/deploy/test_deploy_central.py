"""deploy/central/: promtool accepts the config, rules and web config; every alert's unit tests pass;
docker-compose.yml parses and every file it mounts exists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.deployhelp import CENTRAL, DASHBOARDS, REPO, need_tool, write_receiver_secrets

RULE_FILES = sorted((CENTRAL / "rules").glob("*.rules.yml"))
RULE_TESTS = sorted((CENTRAL / "tests").glob("*.test.yml"))


def _promtool(*args: str, cwd: Path = CENTRAL) -> subprocess.CompletedProcess[str]:
    tool = need_tool("promtool")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rules_check() -> None:
    assert len(RULE_FILES) >= 2
    proc = _promtool("check", "rules", *map(str, RULE_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_unit_tests_that_pass() -> None:
    proc = _promtool("test", "rules", *map(str, RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = set()
    for f in RULE_FILES:
        for line in f.read_text().splitlines():
            if line.strip().startswith("- alert:"):
                alerts.add(line.split(":", 1)[1].strip())
    assert len(alerts) == 10  # issue 26's two live-BGP alerts, issue 28's unhealthy agent and silent fleet
    tests_text = "".join(t.read_text() for t in RULE_TESTS)
    for alert in alerts:
        # Each alert is tested firing (exp_alerts with labels) and silent (exp_alerts: []).
        blocks = tests_text.split(f"alertname: {alert}\n")[1:]
        assert any(b.lstrip().startswith("exp_alerts: []") for b in blocks), f"{alert}: no silent case"
        assert any(b.lstrip().startswith("exp_alerts:\n") for b in blocks), f"{alert}: no firing case"


def test_rule_tests_can_fail(tmp_path: Path) -> None:
    """promtool test rules really compares: a wrong expectation (an old AS table that does not alert)
    must fail."""
    broken = tmp_path / "broken.test.yml"
    rules = ", ".join(f'"{f}"' for f in RULE_FILES)
    broken.write_text(
        f"rule_files: [{rules}]\n"
        "evaluation_interval: 1m\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'nkprobe_asn_table_snapshot_timestamp_seconds{agent=\"a1\"}'\n"
        "        values: '-3000000x120'\n"
        "    alert_rule_test:\n"
        "      - eval_time: 70m\n"
        "        alertname: NkprobeAsnTableTooOld\n"
        "        exp_alerts: []\n"
    )
    proc = _promtool("test", "rules", str(broken))
    assert proc.returncode != 0
    assert "NkprobeAsnTableTooOld" in proc.stdout + proc.stderr


def test_prometheus_config_check() -> None:
    proc = _promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout


def _setup_copy(tmp_path: Path, receiver_secrets: bool = True) -> Path:
    """A copy of deploy/central without secrets; with `receiver_secrets`, the Alertmanager's receiver
    secrets written as the operator would."""
    copy = tmp_path / "central"
    shutil.copytree(CENTRAL, copy, ignore=shutil.ignore_patterns("secrets", ".env"))
    if receiver_secrets:
        write_receiver_secrets(copy / "secrets")
    return copy


def test_setup_creates_credentials_and_a_valid_web_config(tmp_path: Path) -> None:
    copy = _setup_copy(tmp_path)
    env = {**os.environ, "CENTRAL_URL": "https://central.invalid/api/v1/write"}
    first = subprocess.run(
        ["bash", "setup.sh", "--no-start"], cwd=copy, capture_output=True, text=True, env=env, timeout=60
    )
    assert first.returncode == 0, first.stderr
    dotenv = (copy / ".env").read_text()
    assert "GRAFANA_ADMIN_PASSWORD=" in dotenv
    add = subprocess.run(
        ["bash", "setup.sh", "add-agent", "pi-berlin-1"],
        cwd=copy,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    assert "--central-url https://central.invalid/api/v1/write --username pi-berlin-1" in add.stdout
    web = (copy / "secrets" / "web.yml").read_text()
    assert "  pi-berlin-1: $2" in web and "  grafana: $2" in web
    proc = _promtool("check", "web-config", str(copy / "secrets" / "web.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Rerunning never rotates the existing secrets.
    again = subprocess.run(["bash", "setup.sh", "--no-start"], cwd=copy, capture_output=True, env=env)
    assert again.returncode == 0
    assert (copy / ".env").read_text() == dotenv
    removed = subprocess.run(
        ["bash", "setup.sh", "remove-agent", "pi-berlin-1"], cwd=copy, capture_output=True, env=env
    )
    assert removed.returncode == 0
    assert "pi-berlin-1" not in (copy / "secrets" / "web.yml").read_text()
    bad = subprocess.run(
        ["bash", "setup.sh", "add-agent", "../x"], cwd=copy, capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "bad name" in bad.stderr


def test_compose_file_parses_and_mounts_existing_paths() -> None:
    import yaml  # PyYAML: a test dependency (pyproject [test]), never a skip

    compose = yaml.safe_load((CENTRAL / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"prometheus", "alertmanager", "grafana"}
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
    assert any(a.startswith("--web.config.file=") for a in services["prometheus"]["command"])
    generated = {"./secrets", "./secrets/alertmanager"}  # written by setup.sh and the operator
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("."):
                assert source in compose["volumes"], source  # a named volume
                continue
            if source in generated:
                continue
            assert (CENTRAL / source).exists(), f"{source} mounted but missing"
    # Grafana's provisioning and the home dashboard are in the repo.
    assert (DASHBOARDS / "provisioning" / "datasources").is_dir()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS / Path(home).name).is_file()
    assert (CENTRAL / "../../dashboards").resolve() == (REPO / "dashboards")
