"""The local network watcher: pure change detection, rtnetlink messages as bytes (pyroute2, which the lab
uses anyway, is the oracle for their layout), and our own netlink sockets in a namespace of the test's
own, where a default route changes and a link goes down."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from agent.net import rtnetlink
from agent.net.localnet import Egress, LocalNetWatcher, egress_changed, egress_from
from agent.net.rtnetlink import Link, Route

# Recorded from pyroute2's encoder (0.7.2 and 0.9.7 give the same bytes): an RTM_NEWROUTE with RTA_TABLE,
# RTA_DST 198.19.176.10, RTA_OIF 7, RTA_PREFSRC 198.18.250.1, RTA_GATEWAY 198.18.250.2 (little-endian).
ROUTE_BYTES = bytes.fromhex(
    "4400000018000000050000000000000002200000fe0000000000000008000f00fe00000008000100c613b00a"
    "080004000700000008000700c612fa0108000500c612fa02"
)
# An RTM_NEWLINK of index 7: IFLA_IFNAME "ln0", IFLA_MTU 1500, IFLA_OPERSTATE UP (a 1-byte attribute).
LINK_BYTES = bytes.fromhex(
    "3800000010000000000000000000000000000000070000000000000000000000080003006c6e300008000400dc05000005"
    "00100006000000"
)


def test_route_and_link_messages_parse_from_bytes() -> None:
    [route_message] = rtnetlink.messages(ROUTE_BYTES)
    assert (route_message.type, route_message.seq) == (rtnetlink.RTM_NEWROUTE, 5)
    assert rtnetlink.parse_route(route_message.body) == Route(7, "198.18.250.2", "198.18.250.1")
    [link_message] = rtnetlink.messages(LINK_BYTES)
    assert link_message.type == rtnetlink.RTM_NEWLINK
    assert rtnetlink.parse_link(link_message.body) == Link(7, "ln0", "UP")
    # Two messages in one datagram (an event burst), each found by its length.
    assert [m.type for m in rtnetlink.messages(ROUTE_BYTES + LINK_BYTES)] == [24, 16]


def test_truncated_and_malformed_bytes_never_loop_or_overread() -> None:
    for cut in range(len(ROUTE_BYTES)):
        for message in rtnetlink.messages(ROUTE_BYTES[:cut]):
            rtnetlink.parse_route(message.body)  # whole messages only; never raises past its length
    assert list(rtnetlink.messages(ROUTE_BYTES[:40])) == []  # its header says 68 bytes
    zero_length = b"\0" * 16
    assert list(rtnetlink.messages(zero_length)) == []
    bad_attr = ROUTE_BYTES[:28] + b"\x02\x00\x01\x00" + ROUTE_BYTES[32:]  # an rtattr shorter than 4
    assert rtnetlink.parse_route(next(rtnetlink.messages(bad_attr)).body) == Route(None, None, None)
    with pytest.raises(ValueError, match="rtmsg of 3 bytes"):
        rtnetlink.parse_route(b"abc")


def test_an_error_answer_carries_the_errno() -> None:
    # struct nlmsgerr: the negated errno, then the request's header.
    body = (-errno.ENETUNREACH).to_bytes(4, sys.byteorder, signed=True) + rtnetlink.route_get_request(
        "192.0.2.1", 9
    )[:16]
    header = (16 + len(body)).to_bytes(4, sys.byteorder) + rtnetlink.NLMSG_ERROR.to_bytes(2, sys.byteorder)
    data = header + b"\0\0" + (9).to_bytes(4, sys.byteorder) + b"\0" * 4 + body
    [message] = rtnetlink.messages(data)
    assert message.type == rtnetlink.NLMSG_ERROR and rtnetlink.error_of(message) == errno.ENETUNREACH


def test_requests_read_back_as_pyroute2_reads_them() -> None:
    """Our two requests, decoded by pyroute2 (the lab's netlink library): the fields we meant."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    route = rtmsg(rtnetlink.route_get_request("198.19.176.10", 41))
    route.decode()
    assert route["header"]["type"] == rtnetlink.RTM_GETROUTE and route["header"]["sequence_number"] == 41
    assert (route["family"], route["dst_len"], route.get_attr("RTA_DST")) == (2, 32, "198.19.176.10")
    link = ifinfmsg(rtnetlink.link_get_request(7, 42))
    link.decode()
    assert link["header"]["type"] == rtnetlink.RTM_GETLINK and link["index"] == 7


def test_pyroute2_encoded_messages_parse_the_same() -> None:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    for oif, gateway, source in ((1, None, "10.0.0.1"), (65535, "203.0.113.254", None), (2**31, None, None)):
        m = rtmsg()
        m["header"]["type"] = rtnetlink.RTM_NEWROUTE
        m["family"] = 2
        m["attrs"] = [("RTA_OIF", oif)]
        m["attrs"] += [("RTA_GATEWAY", gateway)] if gateway else []
        m["attrs"] += [("RTA_PREFSRC", source)] if source else []
        m.encode()
        [message] = rtnetlink.messages(bytes(m.data))
        assert rtnetlink.parse_route(message.body) == Route(oif, gateway, source)
    for state in rtnetlink.OPERSTATES:
        m = ifinfmsg()
        m["header"]["type"] = rtnetlink.RTM_NEWLINK
        m["index"] = 3
        m["attrs"] = [("IFLA_IFNAME", "wlan0"), ("IFLA_OPERSTATE", state)]
        m.encode()
        [message] = rtnetlink.messages(bytes(m.data))
        assert rtnetlink.parse_link(message.body) == Link(3, "wlan0", state)


def test_egress_from_route_and_link_keeps_only_the_name_for_export() -> None:
    route = Route(3, "192.0.2.1", "192.0.2.9")
    e = egress_from(route, Link(3, "wlan0", "UP"))
    assert e == Egress("wlan0", 3, "192.0.2.1", "192.0.2.9", True)
    assert egress_from(None, None) == Egress.none()
    assert egress_from(route, Link(3, "eth0", "DOWN")).up is False
    assert egress_from(route, Link(3, "lo", "UNKNOWN")).up is True  # no carrier reporting


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


def watch(
    netns: str, change: Callable[[], None], *, toward: str = "198.19.176.10"
) -> tuple[LocalNetWatcher, list[str], list[str]]:
    """Run a watcher in `netns`, apply `change` once it has its first look, wait for its verdict."""
    changes: list[str] = []
    egress: list[str] = []
    w = LocalNetWatcher(toward, netns=netns, on_change=lambda: changes.append("c"), on_egress=egress.append)

    async def until(condition: Callable[[], bool], seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                await asyncio.sleep(0.02)

    async def main() -> None:
        task = asyncio.create_task(w.run())
        try:
            await until(lambda: w.egress is not None, 5)
            assert w.egress is not None and w.egress.interface == "ln0" and w.egress.up
            change()  # no packet leaves: the namespace has no way out anyway
            await until(lambda: bool(changes), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return w, changes, egress


def test_watcher_sees_a_default_route_change_in_its_namespace(netns: str) -> None:
    def change() -> None:
        subprocess.run(["ip", "-n", netns, "route", "replace", "default", "via", "198.18.250.3"], check=True)

    w, changes, egress = watch(netns, change)
    assert changes == ["c"]
    assert w.egress is not None and w.egress.gateway == "198.18.250.3"
    assert w.egress.source == "198.18.250.1" and w.egress.interface == "ln0"
    assert egress == ["ln0"]


def test_watcher_sees_its_link_go_down(netns: str) -> None:
    w, changes, egress = watch(
        netns, lambda: subprocess.run(["ip", "-n", netns, "link", "set", "ln0", "down"])
    )
    assert changes == ["c"]
    # The kernel drops a down link's routes: no route toward the targets now, and no interface to export.
    assert w.egress == Egress.none()
    assert egress == ["ln0", ""]


def test_a_watch_that_cannot_start_is_an_error_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[str] = []
    w = LocalNetWatcher(
        "198.19.176.10", netns="nkp-h2-no-such-netns", on_change=lambda: None, on_egress=lambda _n: None,
        on_error=lambda: errors.append("localnet"),
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="nkprobe.localnet"):
        asyncio.run(w.run())  # returns: the agent goes on probing without the watch
    assert errors == ["localnet"]
    [record] = [r for r in caplog.records if r.name == "nkprobe.localnet"]
    assert record.levelno == logging.ERROR and "cannot watch the local network" in record.getMessage()
    assert "nkp-h2-no-such-netns" in record.getMessage()
