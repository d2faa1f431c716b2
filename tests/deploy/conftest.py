"""Registers the `slow` marker used by the deploy tests (pyproject's --strict-markers needs it)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: minutes long (debootstrap); skipped unless NKPROBE_SLOW=1")
