"""The Debian package, built once per session by deploy/debian/build.sh (about 5 s a build)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from deployhelp import REPO, need_tool

from agent import __version__

BUILD = REPO / "deploy" / "debian" / "build.sh"
NEXT_VERSION = f"{__version__}.1"  # the "next release" the upgrade tests move to


def build_deb(out: Path, version: str | None = None) -> Path:
    for tool in ("dpkg-buildpackage", "dh", "dh_python3"):
        need_tool(tool)
    args = [str(BUILD), "--out", str(out)] + (["--version", version] if version else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deb = Path(proc.stdout.strip().splitlines()[-1])
    assert deb.name == f"nkprobe_{version or __version__}_all.deb" and deb.is_file(), proc.stdout
    return deb


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nkprobe_VERSION_all.deb of this checkout."""
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def next_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same code built as the next version (NEXT_VERSION), to upgrade to."""
    return build_deb(tmp_path_factory.mktemp("deb-next"), NEXT_VERSION)
