"""The forwarder as a volunteer's Pi runs it: vmagent started from the unit and the scrape config that
deploy/raspberry-pi/install.sh installs, scraping the real `nkprobe run` (probing the lab), pushing to
the central Prometheus as deploy/central/setup.sh configures it, across an outage of the central server.

Nothing here builds vmagent's flags: install.sh renders the files into a directory standing for the Pi's
root, and the command line is the installed unit's ExecStart= worked out as systemd would
(tests/support/unitfile.py): `${...}` from its EnvironmentFile=, `%d` its credentials directory, `%S` the
state root. The only test-time changes: the paths of the installed system point into that directory, and
the scrape interval is 1 s instead of 30 s.

The unit's ports are fixed (vmagent on 127.0.0.1:9932, the agent on 127.0.0.1:9931, the central on
:9090), so agent, forwarder and central run in a network namespace of their own (`nkpfwd<pid>`, loopback
only) where those ports are free whatever else runs on this machine; the agent's probe sockets are in the
lab's vantage namespace (`--netns`). Nothing leaves loopback and the lab.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.lab.info import LabInfo
from tests.support.agent_harness import agent_config
from tests.support.central import Central, Processes, get, start_central, wait_http
from tests.support.deployhelp import REPO, FakeRoot, need_tool
from tests.support.unitfile import in_root, read_environment_file, read_unit, service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

AGENT_NAME = "e2e-pi"  # the user setup.sh add-agent creates in start_central
SCRAPE_INTERVAL_S = 1.0
OUTAGE_SCRAPES = 8  # scrapes vmagent makes while the central server is down
SERIES = f'nkprobe_agent_info{{agent="{AGENT_NAME}"}}'
# vmagent retries a failed push with a doubling back-off (1 s, 2 s, 4 s, ... capped at 1 min, VictoriaMetrics
# lib/promremotewrite client.go): after an 8 s cut, the next attempt comes within ~8 s of the return.
DELIVERY_TIMEOUT_S = 40.0


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with only loopback, removed afterwards (with whatever still runs in it)."""
    name = f"nkpfwd{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.stop()


def metrics(url: str, netns: str) -> dict[str, float]:
    """Unlabelled samples of a /metrics page, by name."""
    text = get(url, netns).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def install(tmp_path: Path, central: Central) -> FakeRoot:
    """install.sh --forwarder vmagent into a directory standing for the Pi's root; its files checked."""
    fake = FakeRoot(tmp_path / "pi")
    proc = fake.run(
        "--name", AGENT_NAME, "--central-url", central.write_url, "--username", central.agent_user,
        "--password", central.agent_password, "--forwarder", "vmagent",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = fake.path("/etc/nkprobe/forwarder.yml")
    scrape = yaml.safe_load(config.read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9931"]
    assert "remote_write" not in scrape  # vmagent takes the URL from its unit, not from this file
    text = config.read_text()
    assert text.count("scrape_interval: 30s") == 1 and text.count("scrape_timeout: 10s") == 1, text
    config.write_text(
        text.replace("scrape_interval: 30s", f"scrape_interval: {SCRAPE_INTERVAL_S:g}s").replace(
            "scrape_timeout: 10s", "scrape_timeout: 1s"
        )
    )
    return fake


def start_forwarder(tmp_path: Path, fake: FakeRoot, procs: Processes, netns: str) -> subprocess.Popen[bytes]:
    """The installed nkprobe-forwarder.service's ExecStart=, with what systemd would set up for it."""
    unit = fake.path("/etc/systemd/system/nkprobe-forwarder.service").read_text()
    assert unit == (REPO / "deploy" / "systemd" / "nkprobe-forwarder.service").read_text()
    environment: dict[str, str] = {}
    for path in read_unit(unit).get("Service.EnvironmentFile", []):
        environment.update(read_environment_file(in_root(fake.root, path).read_text()))
    credentials = tmp_path / "credentials" / "nkprobe-forwarder.service"
    state_root = tmp_path / "var-lib"
    svc = service(unit, environment=environment, credentials_dir=str(credentials), state_dir=str(state_root))
    # LoadCredential=: systemd copies each source into a read-only directory of the service's own.
    credentials.mkdir(parents=True)
    for name, source in svc.credentials.items():
        shutil.copyfile(in_root(fake.root, source), credentials / name)
        (credentials / name).chmod(0o400)
    credentials.chmod(0o500)
    for directory in svc.state_directories:
        (state_root / directory).mkdir(parents=True, mode=svc.state_directory_mode)
    # The installed system's own paths (the scrape config) are inside the directory standing for its root.
    argv = [a.replace("=/etc/nkprobe/", f"={fake.root}/etc/nkprobe/") for a in svc.argv]
    assert argv[0] == "/usr/bin/vmagent", argv
    need_tool("vmagent")
    log = tmp_path / "forwarder.log"
    proc: subprocess.Popen[bytes] = procs.start(argv, log, netns=netns, umask=svc.umask)
    wait_http("http://127.0.0.1:9932/metrics", proc, log, netns)
    return proc


def sample_times(central: Central, start: float, end: float) -> list[float]:
    """Timestamps of the samples of SERIES stored at the central server in (start, end]."""
    result = central.query(f"{SERIES}[{int(end - start) + 1}s]", at=end)
    assert len(result) <= 1, result
    return [float(t) for t, _ in result[0]["values"] if start < float(t) <= end] if result else []


def gaps(times: list[float]) -> list[tuple[float, float]]:
    """Neighbouring samples more than three scrapes apart. vmagent may skip a tick of its own on a loaded
    machine (then it also counts one scrape fewer, which the test's count comparison allows for); three
    in a row missing would be the forwarder's loss, not the scheduler's jitter.

    >>> gaps([1.0, 2.0, 3.1, 5.9, 9.5])
    [(5.9, 9.5)]
    """
    return [(a, b) for a, b in itertools.pairwise(times) if b - a > 3.5 * SCRAPE_INTERVAL_S]


def test_installed_vmagent_loses_no_scrape_across_a_central_outage(
    lab: LabInfo, tmp_path: Path, netns: str, procs: Processes
) -> None:
    """Every scrape vmagent made of the real agent, before, during and after a cut of the central server,
    is stored there: vmagent kept the pushes it could not deliver and replayed them when the server came
    back on the same port and storage. (A cut this short stays in vmagent's in-memory queue; it spills to
    -remoteWrite.tmpDataPath, the unit's state directory, once that fills or vmagent stops. That part is
    not shown here.)"""
    started = time.time()
    central = start_central(tmp_path, procs, netns=netns)
    config = agent_config(
        lab, tmp_path, state_dir=tmp_path / "state", name=AGENT_NAME, listen="127.0.0.1:9931"
    )
    agent_log = tmp_path / "agent.log"
    agent = procs.start(
        [sys.executable, "-m", "agent", "run", "--config", str(config), "--netns", lab.vantage_ns],
        agent_log,
        cwd=REPO,
        netns=netns,
    )
    wait_http("http://127.0.0.1:9931/metrics", agent, agent_log, netns)
    fake = install(tmp_path, central)
    start_forwarder(tmp_path, fake, procs, netns)
    vmagent = "http://127.0.0.1:9932/metrics"

    def scrapes() -> float:
        return metrics(vmagent, netns)["vm_promscrape_scrape_duration_seconds_count"]

    central.wait_for(SERIES, lambda r: len(r) == 1)
    wait_for(lambda: len(sample_times(central, started, time.time())) >= 3, 20, "3 samples before the cut")

    assert central.proc is not None
    central.proc.terminate()
    central.proc.wait(timeout=15)
    cut, at_cut = time.time(), scrapes()
    with pytest.raises(urllib.error.URLError):
        central.query(SERIES)  # really gone
    wait_for(
        lambda: scrapes() >= at_cut + OUTAGE_SCRAPES, 30, lambda: f"vmagent stopped scraping: {scrapes()}"
    )
    log = tmp_path / "central-restarted.log"
    back = time.time()
    proc = procs.start(list(central.args), log, netns=netns)
    wait_http(f"http://127.0.0.1:{central.port}/-/ready", proc, log, netns)

    # Every scrape vmagent had finished at `read` has its sample stored (one more may have started
    # before `read` and finished after it): no sample lost, whatever the machine's load did to the ticks.
    read, done = time.time(), scrapes()
    assert metrics(vmagent, netns)["vm_promscrape_scrapes_failed_total"] == 0
    wait_for(
        lambda: len(sample_times(central, started, read)) >= done,
        DELIVERY_TIMEOUT_S,
        lambda: (
            f"{len(sample_times(central, started, read))} of {done:.0f} scrapes stored; vmagent log: "
            + (tmp_path / "forwarder.log").read_text()[-1500:]
        ),
    )
    times = sample_times(central, started, read)
    assert done <= len(times) <= done + 1, f"{len(times)} samples stored for {done:.0f} scrapes"
    assert not gaps(times), f"samples missing across the outage {cut:.1f}..{back:.1f}: {gaps(times)}"
    during = [t for t in times if cut < t < back]
    # The forwarder's labels as the central rules and dashboards expect them, on the agent's real series:
    # every upstream tag of every configured target, each series with `agent` and `instance`.
    targets = tomllib.loads(config.read_text())["targets"]
    tags = central.query(f'nkprobe_path_upstream{{agent="{AGENT_NAME}"}}')
    assert len(tags) == 4 * len(targets) and {s["metric"]["instance"] for s in tags} == {AGENT_NAME}
    assert len(during) >= OUTAGE_SCRAPES - 2, f"{len(during)} samples from the outage {cut:.1f}..{back:.1f}"
