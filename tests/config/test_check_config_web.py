"""`nkprobe check-config` loads the web config the config names exactly as `nkprobe run` does: it never
calls "ok" a config the agent would refuse at start (a bad hash, a missing file, no bcrypt module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

REPO = Path(__file__).resolve().parents[2]
# A namespace that does not exist: should `nkprobe run` ever get past the web config in these tests, it
# stops at opening its probe sockets there (UsageError, exit 2), before any packet could leave.
NO_SUCH_NETNS = "nkp-checkweb-none"


def write_config(tmp_path: Path, web: str | None) -> Path:
    """A valid agent config (destination in the lab's test range) naming web.yml with `web` in it."""
    lines = [
        "[agent]",
        f'state_dir = "{tmp_path / "state"}"',
        'listen = "127.0.0.1:0"',
        *(['web_config_file = "web.yml"'] if web is not None else []),
        "[[targets]]",
        'address = "198.19.176.10"',
        "[destination]",
        "asn = 64500",
        'prefixes = ["198.19.176.0/22"]',
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    if web is not None and web != "<missing>":
        (tmp_path / "web.yml").write_text(web)
    return path


def nkprobe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )  # fmt: skip


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def test_a_valid_web_config_is_ok(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"basic_auth_users:\n  prom: '{hashed('pw')}'\n")
    proc = nkprobe("check-config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert ": ok: 1 target in 1 /24" in proc.stdout


@pytest.mark.parametrize(
    ("web", "problem"),
    [
        ("basic_auth_users:\n  prom: plaintext\n", "basic_auth_users.prom: not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n", "cannot load cert_file/key_file"),
        ("<missing>", "cannot read web config"),
        ("a: 1\na: 2\n", "line 2: duplicate key 'a'"),
    ],
)
def test_check_config_refuses_what_the_agent_refuses(tmp_path: Path, web: str, problem: str) -> None:
    config = write_config(tmp_path, web)
    check = nkprobe("check-config", str(config))
    assert check.returncode == 2 and check.stdout == ""
    lines = check.stderr.splitlines()
    assert lines[0] == f"{config}: 1 problem; fix it and run check-config again:"
    assert lines[1].startswith("agent.web_config_file: ") and problem in lines[1], check.stderr
    run = nkprobe(
        "run", "--config", str(config), "--netns", NO_SUCH_NETNS, "--web.listen-address", "127.0.0.1:0"
    )
    assert run.returncode == 2 and problem in run.stderr, run.stderr  # the agent refuses it too


def test_without_the_bcrypt_module_basic_auth_is_refused_by_both(tmp_path: Path) -> None:
    """A system where `import bcrypt` fails (a shadowing package here): no basic auth it cannot check."""
    shadow = tmp_path / "shadow" / "bcrypt"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no bcrypt on this system (test)')\n")
    config = write_config(tmp_path, f"basic_auth_users:\n  prom: '{hashed('pw')}'\n")
    env = {"PYTHONPATH": f"{shadow.parent}{os.pathsep}{REPO}"}
    check = nkprobe("check-config", str(config), env=env)
    assert check.returncode == 2 and "needs bcrypt" in check.stderr and "python3-bcrypt" in check.stderr
    run = nkprobe("run", "--config", str(config), "--netns", NO_SUCH_NETNS, env=env)
    assert run.returncode == 2 and "needs bcrypt" in run.stderr, run.stderr
    plain = write_config(tmp_path, "tls_server_config:\n")  # no users: bcrypt is not needed
    assert nkprobe("check-config", str(plain), env=env).returncode == 0
