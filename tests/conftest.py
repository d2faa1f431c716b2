"""Shared fixtures. `lab`: one namespace lab for the whole test session (needs root; skipped otherwise).

Tests that probe must do it inside `lab.vantage_ns` (`ip netns exec`), never from this namespace: the
fixture only yields once its own lab is up, so a test can never fall back to the real network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agent.lab.info import LabInfo

# One prefix per test session; different from the default "nkp-" so a developer's own lab survives.
LAB_TEST_PREFIX = os.environ.get("NKPROBE_TEST_LAB_PREFIX", "nkp-t-")


def lab_skip_reason() -> str | None:
    """Why lab tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces); run pytest as root, as CI does"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[LabInfo]:
    """A lab with prefix LAB_TEST_PREFIX, built with the default scenario and removed at the end.

    A stale lab with the same prefix (an interrupted earlier session) is taken down first.
    """
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from agent.lab import build, scenario

    build.down(LAB_TEST_PREFIX)
    info = build.up(LAB_TEST_PREFIX, scenario.load())
    try:
        yield info
    finally:
        build.down(LAB_TEST_PREFIX)
