"""deploy/systemd/: systemd accepts every unit, each service's exposure score is 2.5 or better, and the
agent's code runs under the kernel's form of its MemoryDenyWriteExecute=yes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deployhelp import DEPLOY, MDWE_EXEC, REPO, need_tool, unavailable, unit_directives

UNITS = DEPLOY / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
MAX_EXPOSURE = 2.5  # systemd-analyze security: 0 = fully locked down, 10 = unprotected; lower is better


def _verifiable_copies(tmp_path: Path) -> list[Path]:
    """The units with each program they run pointed at a stub: verify checks that programs exist, and
    /usr/bin/nkprobe, vmagent or prometheus exist only on an installed machine. All else is verbatim."""
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for unit in sorted(UNITS.iterdir()):
        text = re.sub(
            r"^(ExecStart=|ExecStartPost=\+?)(/usr/bin/nkprobe|/usr/bin/vmagent|/usr/bin/prometheus)\b",
            rf"\g<1>{stub}",
            unit.read_text(),
            flags=re.M,
        )
        copy = tmp_path / unit.name
        copy.write_text(text)
        copies.append(copy)
    return copies


def test_every_unit_verifies(tmp_path: Path) -> None:
    tool = need_tool("systemd-analyze")
    copies = _verifiable_copies(tmp_path)
    assert {c.name for c in copies} >= {
        "nkprobe.service",
        "nkprobe-forwarder.service",
        "nkprobe-forwarder-prometheus.service",
        "nkprobe-asn-update.service",
        "nkprobe-asn-update.timer",
    }
    proc = subprocess.run(
        [tool, "verify", "--man=no", *map(str, copies)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    # verify warns (unknown directive, bad value, missing unit) on stderr and may still exit 0.
    assert proc.stderr.strip() == "", proc.stderr


def _exposure(unit: Path) -> float:
    tool = need_tool("systemd-analyze")
    proc = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1))


@pytest.mark.parametrize("unit", SERVICES, ids=[s.name for s in SERVICES])
def test_service_exposure_is_low(unit: Path) -> None:
    assert _exposure(unit) <= MAX_EXPOSURE


def test_exposure_score_detects_a_weak_unit(tmp_path: Path) -> None:
    """The score parser is not vacuous: a unit without hardening scores far above the bar."""
    weak = tmp_path / "weak.service"
    weak.write_text("[Service]\nExecStart=/bin/true\n")
    assert _exposure(weak) > 9.0


def test_agent_unit_keeps_raw_sockets_working() -> None:
    d = unit_directives(UNITS / "nkprobe.service")
    assert d["User"] == ["nkprobe"]
    assert d["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert d["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["StateDirectory"] == ["nkprobe"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
        "AF_PACKET",
        "AF_UNIX",
    }
    # A user namespace would make CAP_NET_RAW useless in the host's network namespace.
    assert "PrivateUsers" not in d
    assert "PrivateNetwork" not in d
    assert d["ExecStart"] == ["/usr/bin/nkprobe run --config /etc/nkprobe/config.toml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_forwarders_listen_on_loopback_only() -> None:
    for name in ("nkprobe-forwarder.service", "nkprobe-forwarder-prometheus.service"):
        start = unit_directives(UNITS / name)["ExecStart"][0]
        assert re.search(r"(-httpListenAddr=|--web.listen-address=)127\.0\.0\.1:9932\b", start), start
        assert "/etc/nkprobe/forwarder.yml" in start


# Run under MDWE_EXEC: shows the rule is in force in this very process (a W+X mapping and an mprotect that
# adds PROT_EXEC are both refused with EACCES), then loads everything `nkprobe run` loads (the agent's
# modules, prometheus_client, sqlite3, ssl, ctypes' libc) and builds a scrape, which must all
# work without writable executable memory.
MDWE_PROBE = """
import ctypes, errno, mmap, sys
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable and executable mapping was allowed")
except PermissionError:
    pass
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)
libc = ctypes.CDLL(None, use_errno=True)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
rx = ctypes.c_int(mmap.PROT_READ | mmap.PROT_EXEC)
rc = libc.mprotect(ctypes.c_void_p(addr), ctypes.c_size_t(4096), rx)
if rc != -1 or ctypes.get_errno() != errno.EACCES:
    sys.exit(f"mprotect(PROT_EXEC) on a data page: rc {rc}, errno {ctypes.get_errno()}")
import importlib, pkgutil, sqlite3, ssl
import agent, agent.commands.run
for mod in pkgutil.walk_packages(agent.__path__, "agent."):
    if not mod.name.startswith("agent.lab") and mod.name != "agent.__main__":  # the lab: not in the unit
        importlib.import_module(mod.name)
from prometheus_client import generate_latest
from agent.exporter import build_registry
from agent.model import Target
from agent.results import Results
state = Results(agent_name="mdwe", version="0", targets=[Target("198.19.176.10")], ping_protocols=("icmp",),
              trace_protocol="tcp", tags=("china_unicom", "transtelecom", "other", "unknown"))
assert b'nkprobe_agent_info{agent="mdwe",id="",owner=""} 1.0' in generate_latest(build_registry(state))
sqlite3.connect(":memory:").execute("select 1")
print("ok")
"""


def test_agent_runs_under_memory_deny_write_execute() -> None:
    """The unit sets MemoryDenyWriteExecute=yes; the agent must load and work under that rule.

    What this can show: the kernel's PR_SET_MDWE (the same rule: no W+X mapping, no page gaining
    PROT_EXEC) is on, its return code and PR_GET_MDWE checked, it refuses both kinds of mapping here,
    and every agent module imports and builds a scrape under it (the install test and the lab end-to-end
    test also run the whole agent under it). What it cannot show: systemd applying the directive itself.
    PID 1 here is not systemd, so the unit cannot be started; bookworm's systemd 252 enforces the
    directive with a seccomp filter, whose refusals are EPERM rather than the kernel rule's EACCES."""
    assert unit_directives(UNITS / "nkprobe.service")["MemoryDenyWriteExecute"] == ["yes"]
    proc = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", MDWE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    if proc.returncode == 126 and "PR_SET_MDWE" in proc.stderr:
        unavailable(f"this kernel has no memory-deny-write-execute: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
    assert "mdwe: on (PR_GET_MDWE = 1)" in proc.stderr


def test_mdwe_wrapper_refuses_to_run_unprotected() -> None:
    """MDWE_EXEC is not vacuous: a prctl that fails stops it before the program runs."""
    # An undefined mask bit: the kernel answers EINVAL.
    broken = MDWE_EXEC.replace("= 65, 66, 1\n", "= 65, 66, 1 << 20\n")
    assert broken != MDWE_EXEC
    proc = subprocess.run(
        [sys.executable, "-c", broken, sys.executable, "-c", "print('ran')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 126 and proc.stdout == "", proc
    assert "prctl(PR_SET_MDWE) failed: Invalid argument" in proc.stderr
