"""`nkprobe demo` whole, with the agent, as a new user runs it (README "Quick start"; quickstart.sh runs
`.venv/bin/nkprobe demo`): it builds its lab, runs the agent in it with the lab's own config, flips
198.19.179.0/24, serves /metrics where the test scrapes it as a user would with curl, and after
--duration exits 0 with nothing left behind.

`--duration 20` in the default home lab (NAT, CGNAT, ICMP rate limits), as the README runs it: the demo
flips 198.19.179.0/24 as soon as its agent has tagged a target there (then every minute). Measured on a
2-core machine with the demo's five targets: the first tag of the /24 after 1-8 s, the change counted
3-5 s after the flip, so on /metrics 7-11 s after the agent started (agent.commands.demo.demo_targets
says why five).
The home lab itself is tested by tests/lab/test_nat_lab.py (the demo's lab and the agent behind NAT).
The demo's lab takes a prefix derived from the session's own (tests/conftest.py), so concurrent test
sessions never collide, and a free port instead of the default 9931.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.lab import build, nsutil
from agent.lab.info import LabInfo, state_dir
from tests.support.agent_harness import free_port

pytestmark = pytest.mark.lab

DURATION_S = 20.0  # as the README runs it (`nkprobe demo --duration 20`)
FLIP_TARGETS = ("198.19.179.10", "198.19.179.20")


def changes(port: int) -> dict[str, float] | None:
    """nkprobe_path_changes_total of the flip /24's targets, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "nkprobe_path_changes_total" and s.labels["target"] in FLIP_TARGETS:
                out[s.labels["target"]] = s.value
    return out


def test_demo_runs_the_agent_shows_a_flip_and_leaves_nothing_behind(lab: LabInfo, tmp_path: Path) -> None:
    prefix = f"{lab.prefix}d-"
    build.down(prefix)
    program = Path(sys.executable).with_name("nkprobe")
    assert program.exists(), f"{program}: the package's entry point, as quickstart.sh installs it"
    port = free_port()
    stderr = tmp_path / "demo.err"
    cmd = [
        str(program),
        "demo",
        "--duration",
        str(int(DURATION_S)),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, "NKPROBE_LAB_PREFIX": prefix},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    started = time.monotonic()
    seen: dict[str, float] = {}
    served = False
    page = b""
    first_change_s: float | None = None
    try:
        # Scrape the demo's agent as a user would with curl, until the demo ends on its own.
        while proc.poll() is None and time.monotonic() - started < DURATION_S + 40:
            now = changes(port)
            if now is not None:
                served = True
                if b"198.19.179.0/24" not in page:  # the status page the demo tells the user to open
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                        page = r.read()
                for t, v in now.items():
                    seen[t] = max(seen.get(t, 0.0), v)
                if first_change_s is None and any(v > 0 for v in now.values()):
                    first_change_s = time.monotonic() - started
            time.sleep(0.5)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        left = [ns for ns in nsutil.list_namespaces() if ns.startswith(prefix)]
        build.down(prefix)  # only if the demo failed to; asserted below
    out = "".join(lines)
    diagnostics = f"stdout:\n{out}\nstderr:\n{stderr.read_text(errors='replace')[-3000:]}"
    print(f"first path change on /metrics after {first_change_s} s; changes seen {seen}")
    assert code == 0, diagnostics
    assert served, f"the agent never served /metrics on 127.0.0.1:{port}: {diagnostics}"
    assert set(seen) == set(FLIP_TARGETS), seen
    assert "198.19.179.0/24 now via transtelecom" in out, diagnostics
    assert f"Open http://127.0.0.1:{port}/ in a browser" in out, diagnostics
    assert b'data-prefix="198.19.179.0/24"' in page
    assert first_change_s is not None and max(seen.values()) >= 1, (
        f"no nkprobe_path_changes_total > 0 during the demo: {seen}; {diagnostics}"
    )
    assert f"lab {prefix!r} removed" in out, diagnostics
    assert not left, f"the demo left namespaces behind: {left}"
    assert not state_dir(prefix).exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the demo's agent still serves after the demo ended"


def test_the_demo_config_probes_each_echo_host_and_both_hosts_of_the_flip_prefix(lab: LabInfo) -> None:
    from agent.commands.demo import FLIP_PREFIX, demo_targets
    from agent.config import loads_config

    config = loads_config(build.agent_config(lab, demo_targets(lab)), "demo.toml")
    probed = {t.address for t in config.targets}
    flip = lab.prefixes[FLIP_PREFIX]
    assert probed == {p.echo_host for p in lab.prefixes.values()} | {flip.quiet_host}
    assert len(loads_config(build.agent_config(lab), "lab.toml").targets) == 2 * len(lab.prefixes)
