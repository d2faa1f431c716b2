"""The lab prefix must begin with "nkp-": `lab down` deletes every namespace that begins with it."""

from __future__ import annotations

import pytest

from agent.errors import UsageError
from agent.lab.info import resolve_prefix


@pytest.mark.parametrize("prefix", ["nkp-", "nkp-x3-", "nkp-t-", "nkp-abcdefghijkl"])
def test_nkp_prefixes_are_accepted(prefix: str) -> None:
    assert resolve_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["x", "xvp", "nkp", "nk-", "nkpx-", "-nkp-", "NKP-", "nkp_x", "nkp-abcdefghijklm", "../nkp-"]
)
def test_other_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(UsageError, match="must begin with 'nkp-'"):
        resolve_prefix(prefix)


def test_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NKPROBE_LAB_PREFIX", "x")
    with pytest.raises(UsageError, match="must begin with 'nkp-'"):
        resolve_prefix()
