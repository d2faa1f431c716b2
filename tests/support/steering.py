"""Where the steering repository's shared/ is (CONTRACT.md, the real IP-to-AS subset): files the tests
check against and the product must never ship or need.

It sits beside the checkout, for a developer and in CI alike (CI lays a copy there; one inside the
checkout is found too). A clone of a local
checkout (`git clone -q . /tmp/ci-clone`, as a developer rehearses CI) finds the one beside the checkout
it was cloned from.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _origin() -> Path | None:
    """The checkout this one was cloned from, if that is a directory on this machine."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True, text=True
        )
    except FileNotFoundError:  # no git: a copy of the tests in a minimal Debian root (test_deploy_debian)
        return None
    url = proc.stdout.strip()
    path = Path(url.removeprefix("file://")) if url and "://" not in url.removeprefix("file://") else None
    return path.resolve() if path is not None and path.is_dir() else None


def shared_file(relative: str) -> Path | None:
    """`shared/<relative>` beside (or in) this checkout, or beside the local checkout it was cloned from."""
    roots = [REPO.parent, REPO]
    origin = _origin()
    if origin is not None:
        roots.append(origin.parent)
    for root in roots:
        candidate = root / "shared" / relative
        if candidate.is_file():
            return candidate
    return None
