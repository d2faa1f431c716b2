"""Paths and tool lookup shared by the deploy/ and dashboards/ tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CENTRAL = DEPLOY / "central"
DASHBOARDS = REPO / "dashboards"


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
