"""End to end on loopback: agent /metrics -> forwarder (Prometheus agent mode, or vmagent) -> the central
Prometheus's authenticated remote-write receiver, configured exactly as install.sh and setup.sh make
them (scrape interval shortened). Everything listens on 127.0.0.1 and talks only to itself.

With the lab up, the real agent probes the lab (inside the vantage namespace) and its path tags arrive
at the central server. vmagent from its installed unit, across an outage: test_deploy_forwarder.py."""

from __future__ import annotations

import base64
import contextlib
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.central import Central, Processes, free_port, start_central, wait_http
from tests.support.deployhelp import (
    DEPLOY,
    MDWE_EXEC,
    REPO,
    FakeRoot,
    need_tool,
    unit_directives,
)
from tests.support.waiting import wait_for


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def central(tmp_path: Path, procs: Processes) -> Central:
    return start_central(tmp_path, procs)


# The agent's real exporter over a fresh state (every label set present), served on loopback. It runs in
# its own interpreter, like the real agent, so pytest's sys.path games cannot swap the package.
FAKE_AGENT = """
import sys, time
from prometheus_client import start_http_server
from agent.exporter import build_registry
from agent.model import Target
from agent.results import Results
state = Results(agent_name="e2e-pi", version="0", targets=[Target("198.19.176.10"), Target("198.19.177.10")],
              ping_protocols=("icmp", "tcp"), trace_protocol="tcp",
              tags=("china_unicom", "transtelecom", "other", "unknown"))
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=build_registry(state))
while True:
    time.sleep(3600)
"""


def _start_fake_agent(tmp_path: Path, procs: Processes) -> int:
    port = free_port()
    log = tmp_path / "fake-agent.log"
    proc = procs.start([sys.executable, "-c", FAKE_AGENT, str(port)], log, cwd=REPO)
    wait_http(f"http://127.0.0.1:{port}/metrics", proc, log)
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


def _prometheus_forwarder_argv(config: Path, data: Path, port: int) -> list[str]:
    """The shipped nkprobe-forwarder-prometheus.service's ExecStart=, as systemd would run it, with only
    what differs here: the config's path (install.sh's /etc/nkprobe/forwarder.yml, rendered into a fake
    root), the state directory (%S, systemd's StateDirectory base) and a free port for the fixed 9932.
    A flag added to or dropped from the unit changes what runs here."""
    (exec_start,) = unit_directives(DEPLOY / "systemd" / "nkprobe-forwarder-prometheus.service")["ExecStart"]
    argv = exec_start.split()
    assert argv[0] == "/usr/bin/prometheus" and "--enable-feature=agent" in argv, argv
    here = {
        "=/etc/nkprobe/forwarder.yml": f"={config}",
        "%S/nkprobe-forwarder": str(data),
        "=127.0.0.1:9932": f"=127.0.0.1:{port}",
    }
    out = [need_tool("prometheus")]
    for word in argv[1:]:
        for shipped, local in here.items():
            word = word.replace(shipped, local)  # noqa: PLW2901
        assert "%" not in word, f"a systemd specifier this test does not stand in for: {word}"
        out.append(word)
    assert f"--config.file={config}" in out and f"--storage.agent.path={data}" in out, out
    return out


def _start_forwarder(kind: str, tmp_path: Path, procs: Processes, central: Central, agent_port: int) -> None:
    config, password = _forwarder_files(tmp_path, kind, central, agent_port)
    port = free_port()
    log = tmp_path / f"forwarder-{kind}.log"
    if kind == "prometheus":
        args = _prometheus_forwarder_argv(config, tmp_path / "fwd-data", port)
    else:
        args = [
            need_tool("vmagent"), f"-promscrape.config={config}", f"-remoteWrite.url={central.write_url}",
            f"-remoteWrite.basicAuth.username={central.agent_user}",
            f"-remoteWrite.basicAuth.passwordFile={password}",
            f"-remoteWrite.tmpDataPath={tmp_path / 'fwd-data'}",
            "-remoteWrite.flushInterval=200ms", f"-httpListenAddr=127.0.0.1:{port}",
        ]  # fmt: skip
    proc = procs.start(args, log)
    wait_http(f"http://127.0.0.1:{port}/metrics", proc, log)


# vmagent, the forwarder install.sh prefers, runs from its installed unit in test_deploy_forwarder.py.
@pytest.mark.parametrize("kind", ["prometheus"])
def test_exporter_metrics_reach_central_with_agent_label(
    kind: str, tmp_path: Path, procs: Processes, central: Central
) -> None:
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


def assert_run_command() -> None:
    """`nkprobe run` exists with the flags these tests give it: `python -m agent run --help`, the way a
    user would ask. A failure, never a skip, so these tests cannot silently stop running."""
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, f"nkprobe run --help exited {proc.returncode}: {proc.stderr}"
    for flag in ("--config", "--netns", "--web.listen-address"):
        assert flag in proc.stdout, f"nkprobe run --help does not list {flag}:\n{proc.stdout}"


def _start_real_agent(tmp_path: Path, procs: Processes, lab: Any, bgp: tuple[str, str] | None = None) -> int:
    """`nkprobe run` on the lab's own config, in its vantage namespace, under MDWE; its /metrics port.
    With `bgp` (RIS Live and RIPEstat URLs of local stand-ins), its live BGP view on, pointed there."""
    agent_port = free_port()
    log = tmp_path / "agent.log"
    config = tmp_path / "agent.toml"
    # The lab's own config, renamed so the `agent` labels agree; its state in our tmp dir.
    text = Path(lab.config_file).read_text()
    text = re.sub(r'(?m)^name = "[^"]*"', 'name = "e2e-pi"', text, count=1)
    text = re.sub(r'(?m)^state_dir = "[^"]*"', f'state_dir = "{tmp_path / "state"}"', text, count=1)
    # Trace rounds more often than the lab's default, so two agreeing rounds (hysteresis) come quickly.
    text = re.sub(r"(?m)^(\[trace\]\s*\ninterval_s = )[0-9.]+", r"\g<1>3.0", text, count=1)
    if bgp is not None:
        live = f'[bgp]\nlive = true\nris_live_url = "{bgp[0]}"\nripestat_url = "{bgp[1]}"\n'
        text = text.replace("[bgp]\nlive = false\n", live, 1)
    config.write_text(text)
    proc = procs.start(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-m", "agent", "run", "--config", str(config),
         "--netns", lab.vantage_ns, "--web.listen-address", f"127.0.0.1:{agent_port}"],
        log,
        cwd=REPO,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{agent_port}/metrics", proc, log)
    # deployhelp.MDWE_EXEC exits 126 unless the kernel confirms the rule: the agent serves under it.
    assert "mdwe: on" in log.read_text(errors="replace"), log.read_text(errors="replace")[-2000:]
    return agent_port


@pytest.mark.lab
def test_real_agent_in_lab_reaches_central(
    tmp_path: Path, procs: Processes, central: Central, request: pytest.FixtureRequest
) -> None:
    """The real `nkprobe run`, probing the lab from its vantage namespace, through the forwarder, under
    memory-deny-write-execute as in its unit."""
    assert_run_command()
    lab = request.getfixturevalue("lab")  # skips without root / namespaces
    agent_port = _start_real_agent(tmp_path, procs, lab)
    _start_forwarder("prometheus", tmp_path, procs, central, agent_port)
    # 198.19.177.0/24 is always behind the TransTeleCom-like chain in the lab.
    got = central.wait_for(
        'nkprobe_path_upstream{agent="e2e-pi", prefix="198.19.177.0/24", upstream="transtelecom"} == 1',
        lambda r: len(r) >= 1,
        timeout=120.0,  # the agent's start, two agreeing trace rounds (hysteresis), one scrape
    )
    assert got[0]["metric"]["instance"] == "e2e-pi"


# Expressions that cannot return data after a lab run of a minute, each with why, evaluated as the part
# that can. Keys are test_deploy_promql's names (file:line or dashboard:panel) plus the expression's start.
PROMQL_STAND_INS = {
    # Alert: compares with 1 h ago (offset 1h), which a fresh receiver does not have; its series:
    "nkprobe.alerts.rules.yml:13": "prefix_upstream:nkprobe_path_upstream:consensus == 1",
    # The following alerts must NOT fire in a healthy lab; each is evaluated as its measured quantity.
    "nkprobe.alerts.rules.yml:35": "target:nkprobe_target_up:avg and on (target, prefix)"
    " target:nkprobe_target_up:agents",
    "nkprobe.alerts.rules.yml:53": "max by (agent) (max_over_time(nkprobe_agent_info[1d]))",
    "nkprobe.alerts.rules.yml:71": "count by (upstream)"
    " (prefix_upstream:nkprobe_path_upstream:consensus == 1)",
    "nkprobe.alerts.rules.yml:89": "time() - min by (agent) (nkprobe_asn_table_snapshot_timestamp_seconds)",
    # The cross-check comes from the live view, whose stand-ins show the lab's routing before the flip:
    # the alert needs 30 minutes of disagreement; the series itself must arrive.
    "nkprobe.alerts.rules.yml:112": "nkprobe_path_upstream_in_bgp",
    # The live BGP view (pointed at the tests' stand-ins, which show the lab's routing) is valid and
    # fully visible: those alerts stay silent; the series they compare must arrive.
    "nkprobe.alerts.rules.yml:133": 'max by (prefix) (nkprobe_bgp_rpki_state{state="invalid"})',
    "nkprobe.alerts.rules.yml:150": "max by (prefix) (nkprobe_bgp_visibility_ratio unless on (agent)"
    " (nkprobe_bgp_stale == 1))",
    # The lab agent's vantage is healthy (NkprobeAgentUnhealthy must not fire); its health must arrive.
    "nkprobe.alerts.rules.yml:168": "max by (agent) (nkprobe_vantage_healthy) == 1",
    # The one agent reports: the fleet is not silent; the count of agents seen must arrive.
    "nkprobe.alerts.rules.yml:192": "count (max by (agent) (max_over_time(nkprobe_agent_info[1d])))",
}
# The lab has two upstreams only (china_unicom, transtelecom): no path is ever tagged "other", so the
# overview's RTT heatmap for "other" is legitimately empty there. It must still evaluate without error.
# One agent is never silent while it runs and never in disagreement with itself, and its BGP
# cross-check may agree throughout: those fleet panels are legitimately empty here.
PROMQL_MAY_BE_EMPTY = (
    'upstream="other"} == 1',
    'upstream="other"})',
    "present_over_time(nkprobe_agent_info[10m])",
    "(prefix_upstream:nkprobe_path_upstream:agent_share > 0.5) and on (prefix)",
    "(nkprobe_path_upstream_in_bgp == 0) * on",
    # The lab agent's vantage is healthy: the fleet's list of unhealthy vantage points is empty.
    "and on (agent) (max by (agent) (nkprobe_vantage_healthy) == 0)",
)
FLIPPED_PREFIX = "198.19.179.0/24"  # follows `nkprobe lab flip`


def _fill_template(expr: str, target: str) -> str:
    """Grafana's variables as a user viewing this run would have them; $__rate_interval etc. as
    test_deploy_promql sets them (2m covers the whole run)."""
    from tests.support.promql import grafana_to_promql

    expr = grafana_to_promql(expr)
    return expr.replace("$agent", "e2e-pi").replace("$prefix", FLIPPED_PREFIX).replace("$target", target)


@pytest.mark.lab
def test_every_dashboard_and_rule_expression_has_data_after_a_lab_flip(
    tmp_path: Path, procs: Processes, central: Central, request: pytest.FixtureRequest
) -> None:
    """Issue 6: the real agent probes the lab, `nkprobe lab flip transtelecom` moves 198.19.179.0/24 to
    the other chain, and then every PromQL expression of the central rules and the dashboards (as
    test_deploy_promql extracts them, template variables filled) returns data from the central receiver.
    Alerts that need hours of history or must not fire are evaluated as PROMQL_STAND_INS says."""
    from tests.support.agent_harness import lab_flip
    from tests.support.promql import all_exprs
    from tests.support.ristest import RipestatServer, RisLiveServer, lab_ripestat

    assert_run_command()
    lab = request.getfixturevalue("lab")  # skips without root / namespaces
    exprs = all_exprs()
    assert len(exprs) > 20
    # The live BGP view's stand-ins on loopback (tests/support/ristest.py), for the BGP panels and alerts.
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    ris = stack.enter_context(RisLiveServer())
    stat = stack.enter_context(RipestatServer(lab_ripestat()))
    lab_flip(lab, "china_unicom")  # the lab's starting state, whatever an earlier test left
    try:
        agent_port = _start_real_agent(tmp_path, procs, lab, bgp=(ris.url, stat.url))
        _start_forwarder("prometheus", tmp_path, procs, central, agent_port)
        path = 'nkprobe_path_upstream{agent="e2e-pi", %s, upstream="%s"} == 1'
        before = central.wait_for(
            path % (f'prefix="{FLIPPED_PREFIX}"', "china_unicom"), lambda r: len(r) >= 1, timeout=90.0
        )
        target = before[0]["metric"]["target"]
        lab_flip(lab, "transtelecom")
        # This very target confirmed on the other chain (both targets of the prefix need not be yet).
        central.wait_for(path % (f'target="{target}"', "transtelecom"), lambda r: len(r) >= 1, timeout=60.0)
    finally:
        lab_flip(lab, "china_unicom")
    pending: dict[str, str] = {}
    for name, expr in exprs:
        stand_in = PROMQL_STAND_INS.get(name)
        pending[f"{name}: {expr[:60]}"] = _fill_template(stand_in or expr, target)
    stale = set(PROMQL_STAND_INS) - {name for name, _ in exprs}
    assert not stale, f"PROMQL_STAND_INS names expressions that moved (rules file edited?): {stale}"
    # Recording rules run every 2 s, rate() needs two samples: a few seconds more for the last ones.
    empty: dict[str, str] = {}

    def all_have_data() -> bool:
        empty.clear()
        for name, promql in pending.items():
            if not central.query(promql) and not any(m in promql for m in PROMQL_MAY_BE_EMPTY):
                empty[name] = promql
        return not empty

    wait_for(
        all_have_data,
        30.0,
        lambda: "no data for:\n" + "\n".join(f"{n}\n    {q}" for n, q in empty.items()),
        step=1.0,
    )
