"""The few rtnetlink messages the local-network watch needs, as bytes: build two requests, read replies.

rtnetlink(7) and netlink(7) define the layout; <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>
and <linux/if_addr.h> the numbers. Every message is a `struct nlmsghdr` (16 bytes) and a body; bodies
start with a fixed header (`ifinfomsg` 16 bytes, `rtmsg` 12, `ifaddrmsg` 8) followed by attributes
(`struct rtattr`: length and type, 2 bytes each, then the value, padded to 4 bytes: RTA_ALIGN). All
integers are in host byte order (netlink is a local protocol): struct's "=" prefix, standard sizes.

Pure functions over bytes, no socket: the watch's I/O is in agent.net.localnet. Only what the watch
reads is parsed; any other attribute is skipped by its length, so newer kernels' additions are harmless.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# <linux/netlink.h>
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
# <linux/rtnetlink.h>: message types and the multicast groups of rtnetlink(7)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
WATCH_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
# route attributes (enum rtattr_type_t) and link attributes (<linux/if_link.h>)
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 1, 4, 5, 7
IFLA_IFNAME, IFLA_OPERSTATE = 3, 16
# RFC 2863 operational states as the kernel numbers them (IF_OPER_*, <linux/if.h>)
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_NLMSGHDR = struct.Struct("=IHHII")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # rta_len, rta_type
_U32 = struct.Struct("=I")
_ERRNO = struct.Struct("=i")  # struct nlmsgerr starts with the negated errno (0: an acknowledgement)


class NetlinkError(OSError):
    """The kernel answered a request with an error (struct nlmsgerr), e.g. ENETUNREACH for no route."""


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    seq: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Route:
    """An RTM_NEWROUTE answer to `route get`: where the kernel would send a packet now."""

    oif: int | None
    gateway: str | None
    prefsrc: str | None


@dataclass(frozen=True, slots=True)
class Link:
    """An RTM_NEWLINK message: an interface's index, name and RFC 2863 operational state."""

    index: int
    name: str
    operstate: str


def _align(n: int) -> int:
    """NLMSG_ALIGN and RTA_ALIGN: to 4 bytes.

    >>> [_align(n) for n in (0, 1, 4, 5, 8)]
    [0, 4, 4, 8, 8]
    """
    return (n + 3) & ~3


def messages(data: bytes) -> Iterator[Message]:
    """The netlink messages of one datagram (a dump or an event burst may hold several).

    A truncated or malformed header ends the walk: the kernel never sends one, and a reader that
    trusted a bad length would loop or read past the datagram.
    """
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, type_, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield Message(type_, seq, data[offset + _NLMSGHDR.size : offset + length])
        offset += _align(length)


def attributes(body: bytes, offset: int) -> dict[int, bytes]:
    """The rtattrs of a message body after its fixed header (`offset`), by type; nested ones unread."""
    out: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(body):
        length, type_ = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size or offset + length > len(body):
            break
        out[type_ & 0x3FFF] = body[offset + _RTATTR.size : offset + length]  # less NLA_F_NESTED etc.
        offset += _align(length)
    return out


def error_of(message: Message) -> int:
    """The errno of an NLMSG_ERROR message (0 is an acknowledgement)."""
    if len(message.body) < _ERRNO.size:
        return 0
    return -int(_ERRNO.unpack_from(message.body)[0])


def _request(type_: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), type_, NLM_F_REQUEST, seq, 0) + body


def _attr(type_: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, type_) + value + b"\0" * (_align(length) - length)


def route_get_request(destination: str, seq: int) -> bytes:
    """RTM_GETROUTE for one IPv4 address: the kernel's route lookup (`ip route get`), no packet sent.

    On a little-endian host (x86; ARM as Pi OS runs it): nlmsghdr (length 36, type 26, NLM_F_REQUEST,
    seq 7, pid 0), rtmsg (AF_INET, dst_len 32, the rest 0), then RTA_DST (length 8, type 1) 192.0.2.1:

    >>> route_get_request("192.0.2.1", 7).hex(" ", 4)
    '24000000 1a000100 07000000 00000000 02200000 00000000 00000000 08000100 c0000201'

    """
    header = _RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0)
    return _request(RTM_GETROUTE, seq, header + _attr(RTA_DST, socket.inet_aton(destination)))


def link_get_request(index: int, seq: int) -> bytes:
    """RTM_GETLINK for one interface index (`ip link show dev`).

    >>> len(link_get_request(3, 1)), link_get_request(3, 1)[4:6]
    (32, b'\\x12\\x00')
    """
    return _request(RTM_GETLINK, seq, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))


def _ipv4(value: bytes | None) -> str | None:
    return socket.inet_ntoa(value) if value is not None and len(value) == 4 else None


def parse_route(body: bytes) -> Route:
    """An RTM_NEWROUTE body: the output interface, gateway and preferred source (IPv4)."""
    if len(body) < _RTMSG.size:
        raise ValueError(f"rtmsg of {len(body)} bytes, expected at least {_RTMSG.size}")
    attrs = attributes(body, _RTMSG.size)
    oif = attrs.get(RTA_OIF)
    return Route(
        oif=_U32.unpack(oif)[0] if oif is not None and len(oif) == 4 else None,
        gateway=_ipv4(attrs.get(RTA_GATEWAY)),
        prefsrc=_ipv4(attrs.get(RTA_PREFSRC)),
    )


def parse_link(body: bytes) -> Link:
    """An RTM_NEWLINK/RTM_DELLINK body: index, name (IFLA_IFNAME, NUL-terminated) and IFLA_OPERSTATE."""
    if len(body) < _IFINFOMSG.size:
        raise ValueError(f"ifinfomsg of {len(body)} bytes, expected at least {_IFINFOMSG.size}")
    _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = attributes(body, _IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    state = attrs.get(IFLA_OPERSTATE, b"\0")[0]
    return Link(index, name, OPERSTATES[state] if state < len(OPERSTATES) else "UNKNOWN")
