"""The allowlist refuses every target outside the destination prefixes, with one line saying why."""

from __future__ import annotations

import pytest

from agent.errors import NotAllowedError, UsageError
from agent.net.allowlist import Allowlist

LAB = ["198.19.176.0/22"]


@pytest.mark.parametrize("addr", ["198.19.176.0", "198.19.177.10", "198.19.179.255", " 198.19.178.20"])
def test_inside_is_allowed(addr: str) -> None:
    assert Allowlist(LAB).check(addr) == addr.strip()


@pytest.mark.parametrize("addr", ["198.19.175.255", "198.19.180.0", "175.45.176.71", "127.0.0.1", "::1"])
def test_outside_is_refused_with_one_line(addr: str) -> None:
    with pytest.raises(NotAllowedError) as info:
        Allowlist(LAB).check(addr)
    message = str(info.value)
    assert "\n" not in message
    assert "198.19.176.0/22" in message and "--config" in message
    assert info.value.exit_code == 2


def test_default_prefix_is_the_real_slash_22() -> None:
    from agent.config import DestinationSection

    a = Allowlist(DestinationSection().prefixes)
    assert a.allows("175.45.179.69")
    assert not a.allows("198.19.176.10")


def test_names_are_refused_without_dns() -> None:
    with pytest.raises(UsageError, match="not an IP address"):
        Allowlist(LAB).check("www.kcna.kp")


def test_bad_prefix_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a network"):
        Allowlist(["198.19.176.0/33"])


def test_empty_allowlist_refuses_everything() -> None:
    with pytest.raises(NotAllowedError, match="none"):
        Allowlist([]).check("198.19.176.10")
