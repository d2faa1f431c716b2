"""Building the Debian package of this checkout with deploy/debian/build.sh, for tests/deploy/conftest.py's
fixtures and the upgrade tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent import __version__
from tests.support.deployhelp import REPO, need_tool

BUILD = REPO / "deploy" / "debian" / "build.sh"
NEXT_VERSION = f"{__version__}.1"  # the "next release" the upgrade tests move to


def build_deb(out: Path, version: str | None = None) -> Path:
    """nkprobe_VERSION_all.deb of this checkout built into `out` (`version`: instead of the package's)."""
    for tool in ("dpkg-buildpackage", "dh", "dh_python3"):
        need_tool(tool)
    args = [str(BUILD), "--out", str(out)] + (["--version", version] if version else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deb = Path(proc.stdout.strip().splitlines()[-1])
    assert deb.name == f"nkprobe_{version or __version__}_all.deb" and deb.is_file(), proc.stdout
    return deb
