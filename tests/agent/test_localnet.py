"""The local network watcher: pure change detection, and netlink in a namespace of the test's own."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from agent.net.localnet import Egress, LocalNetWatcher, egress_changed, egress_from


def test_egress_from_route_and_link_messages_keeps_only_the_name_for_export() -> None:
    route = {"RTA_OIF": 3, "RTA_GATEWAY": "192.0.2.1", "RTA_PREFSRC": "192.0.2.9"}
    link = {"IFLA_IFNAME": "wlan0", "IFLA_OPERSTATE": "UP"}
    e = egress_from(route, link)
    assert e == Egress("wlan0", 3, "192.0.2.1", "192.0.2.9", True)
    assert egress_from(None, None) == Egress.none()
    assert egress_from(route, {"IFLA_IFNAME": "eth0", "IFLA_OPERSTATE": "DOWN"}).up is False


def test_update_calls_on_change_only_for_a_real_change() -> None:
    calls: list[str] = []
    names: list[str] = []
    w = LocalNetWatcher(
        "198.19.176.10", netns=None, on_change=lambda: calls.append("x"), on_egress=names.append
    )
    a = Egress("eth0", 2, "192.0.2.1", "192.0.2.9", True)
    assert w.update(a) is False  # the first look
    assert w.update(a) is False
    assert w.update(Egress("eth0", 2, "192.0.2.1", "192.0.2.10", True)) is True  # new DHCP address
    assert w.update(Egress("eth0", 2, "192.0.2.1", "192.0.2.10", False)) is True  # carrier lost
    assert calls == ["x", "x"]
    assert names == ["eth0"]  # the exported name changed once (from nothing)
    assert egress_changed(None, a) is False


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    name = f"nkp-ln{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            "link add ln0 type veth peer name ln1",
            "link set ln0 up",
            "link set ln1 up",
            "addr add 198.18.250.1/24 dev ln0",
            "route add default via 198.18.250.2",
        ):
            subprocess.run(["ip", "-n", name, *cmd.split()], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_watcher_sees_a_default_route_change_in_its_namespace(netns: str) -> None:
    changes: list[str] = []
    egress: list[str] = []

    async def main() -> Any:
        w = LocalNetWatcher(
            "198.19.176.10", netns=netns, on_change=lambda: changes.append("c"), on_egress=egress.append
        )
        task = asyncio.create_task(w.run())
        for _ in range(50):
            if w.egress is not None:
                break
            await asyncio.sleep(0.05)
        assert w.egress is not None and w.egress.interface == "ln0"
        # No packet leaves: a route is replaced in a namespace that has no way out anyway.
        subprocess.run(["ip", "-n", netns, "route", "replace", "default", "via", "198.18.250.3"], check=True)
        for _ in range(60):
            if changes:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return w

    w = asyncio.run(main())
    assert changes == ["c"]
    assert w.egress is not None and w.egress.gateway == "198.18.250.3"
    assert egress == ["ln0"]
