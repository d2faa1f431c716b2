"""The Debian package, built once per session by deploy/debian/build.sh (about 5 s a build;
tests/support/debpackage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.debpackage import NEXT_VERSION, build_deb


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nkprobe_VERSION_all.deb of this checkout."""
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def next_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same code built as the next version (NEXT_VERSION), to upgrade to."""
    return build_deb(tmp_path_factory.mktemp("deb-next"), NEXT_VERSION)
