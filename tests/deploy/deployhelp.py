"""Paths and tool lookup shared by the deploy/ and dashboards/ tests."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CENTRAL = DEPLOY / "central"
DASHBOARDS = REPO / "dashboards"
INSTALL = DEPLOY / "raspberry-pi" / "install.sh"


def need_tool(name: str) -> str:
    """The tool's path, or skip the test saying which Debian package brings it."""
    path = shutil.which(name)
    if path is None:
        package = {
            "promtool": "prometheus",
            "prometheus": "prometheus",
            "systemd-analyze": "systemd",
            "shellcheck": "shellcheck",
            "debootstrap": "debootstrap",
            "vmagent": "victoria-metrics",
        }.get(name, name)
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


class FakeRoot:
    """A directory standing for the Pi's root file system. Commands install.sh runs inside it (chroot)
    and systemctl calls are written to logs instead of being executed."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        (self.root / "etc").mkdir(parents=True)
        (self.root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
        (self.root / "etc" / "hostname").write_text("pi-test.example\n")
        self.chroot_log = tmp / "chroot.log"
        self.systemctl_log = tmp / "systemctl.log"
        for tool, log in (("chroot", self.chroot_log), ("systemctl", self.systemctl_log)):
            script = tmp / f"fake-{tool}"
            script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
            script.chmod(0o755)
        self.env = {
            **os.environ,
            "ROOT": str(self.root),
            "CHROOT": str(tmp / "fake-chroot"),
            "SYSTEMCTL": str(tmp / "fake-systemctl"),
        }

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        for log in (self.chroot_log, self.systemctl_log):
            log.unlink(missing_ok=True)
        return subprocess.run(
            ["bash", str(INSTALL), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def mode(self, p: str) -> int:
        return stat.S_IMODE(self.path(p).stat().st_mode)

    def chroot_calls(self) -> list[str]:
        text = self.chroot_log.read_text() if self.chroot_log.exists() else ""
        return [line.removeprefix(f"{self.root} ") for line in text.splitlines()]

    def systemctl_calls(self) -> list[str]:
        return self.systemctl_log.read_text().splitlines() if self.systemctl_log.exists() else []
