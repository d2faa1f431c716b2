"""deploy/systemd/: systemd accepts every unit and each service's exposure score is 2.5 or better."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deployhelp import DEPLOY, need_tool

UNITS = DEPLOY / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
MAX_EXPOSURE = 2.5  # systemd-analyze security: 0 = fully locked down, 10 = unprotected; lower is better


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(" ".join(value.split()))
    return out


def _verifiable_copies(tmp_path: Path) -> list[Path]:
    """The units with each program they run pointed at a stub: verify checks that programs exist, and
    /opt/nkprobe, vmagent or prometheus exist only on an installed machine. All else is verbatim."""
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for unit in sorted(UNITS.iterdir()):
        text = re.sub(
            r"^(ExecStart=|ExecStartPost=\+?)(/opt/nkprobe/bin/nkprobe|/usr/bin/vmagent|/usr/bin/prometheus)\b",
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
    d = _directives(UNITS / "nkprobe.service")
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
    assert d["ExecStart"] == ["/opt/nkprobe/bin/nkprobe run --config /etc/nkprobe/config.toml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_forwarders_listen_on_loopback_only() -> None:
    for name in ("nkprobe-forwarder.service", "nkprobe-forwarder-prometheus.service"):
        start = _directives(UNITS / name)["ExecStart"][0]
        assert re.search(r"(-httpListenAddr=|--web.listen-address=)127\.0\.0\.1:9932\b", start), start
        assert "/etc/nkprobe/forwarder.yml" in start
