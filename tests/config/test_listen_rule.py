"""One rule for a listen address: check-config, agent.listen and `nkprobe run --web.listen-address` agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import listen_problem, parse_listen
from agent.errors import ConfigError

GOOD = ("127.0.0.1:9931", "0.0.0.0:1", "[::1]:9931", ":9931", "localhost:9931", "127.0.0.1:0")
BAD = ("pi.local:9931", "example.com:80", "9931", "host:", "127.0.0.1:99999", "::1:9931", "[::zz]:80")

# Loopback only: were the rule ever to let the address through, the agent would probe 127.0.0.1, never
# the network (the run is also stopped by the listen fault before the probe sockets open).
LOOPBACK_CONFIG = """[agent]
state_dir = "{state}"
listen = "{listen}"
[destination]
prefixes = ["127.0.0.0/24"]
[[targets]]
address = "127.0.0.1"
"""


def nkprobe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.parametrize("address", GOOD)
def test_good_addresses_parse(address: str) -> None:
    assert listen_problem(address) is None
    host, port = parse_listen(address)
    assert address.endswith(f":{port}") and host in address


@pytest.mark.parametrize("address", BAD)
def test_bad_addresses_are_refused_by_both(address: str) -> None:
    problem = listen_problem(address)
    assert problem is not None
    with pytest.raises(ConfigError, match="listen address"):
        parse_listen(address)


def test_a_host_name_fails_check_config_and_run_alike(tmp_path: Path) -> None:
    """`pi.local:9931` used to pass check-config and fail `run`; now both refuse it with one message."""
    message = "give the host as an IP address or localhost, not 'pi.local' (a name is not resolved)"
    path = tmp_path / "agent.toml"
    path.write_text(LOOPBACK_CONFIG.format(state=tmp_path, listen="pi.local:9931"))
    checked = nkprobe("check-config", str(path))
    assert checked.returncode == 2 and f"agent.listen: {message}" in checked.stderr
    ran = nkprobe("run", "--config", str(path))
    assert ran.returncode == 2 and f"agent.listen: {message}" in ran.stderr
    # The flag goes through the same rule: a good file, a bad --web.listen-address.
    path.write_text(LOOPBACK_CONFIG.format(state=tmp_path, listen="127.0.0.1:9931"))
    assert nkprobe("check-config", str(path)).returncode == 0
    flagged = nkprobe("run", "--config", str(path), "--web.listen-address", "pi.local:9931")
    assert flagged.returncode == 2, flagged.stderr
    assert flagged.stderr.strip().splitlines()[-1].endswith(f"listen address 'pi.local:9931': {message}")
