"""Entering network namespaces from Python: sysctls, ioctls and sockets that must live inside one.

setns(2) is the net layer's (agent.net.netns.setns). The calling thread switches namespace; `inside()`
always switches back, even on errors. /proc/sys/net/* is resolved in the namespace of the process that
opens the file, which is what makes `sysctl()` work per namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.net.netns import setns

NETNS_RUN_DIR = Path("/run/netns")
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17  # legacy "set TX checksum offload"; the kernel maps it onto the feature flags
ETHTOOL_SGSO = 0x24


def ns_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def exists(name: str) -> bool:
    return ns_path(name).exists()


def list_namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with this thread in network namespace `name`."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(ns_path(name), os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def enter(name: str) -> None:
    """Move this process (single-threaded) into namespace `name` for good; used by helper processes."""
    fd = os.open(ns_path(name), os.O_RDONLY)
    try:
        setns(fd)
    finally:
        os.close(fd)


def sysctl(path: str, value: str | int, missing_ok: bool = False) -> None:
    """Write /proc/sys/<path> in the current namespace, e.g. sysctl("net/ipv4/ip_forward", 1)."""
    try:
        Path("/proc/sys", path).write_text(f"{value}\n")
    except FileNotFoundError:
        if not missing_ok:
            raise


def _ethtool_set(ifname: str, cmd: int, value: int) -> None:
    data = ctypes.create_string_buffer(struct.pack("II", cmd, value))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(data)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def disable_offloads(ifname: str) -> None:
    """`ethtool -K IF tx off gso off` without ethtool.

    A veth normally hands locally generated TCP/UDP frames over with CHECKSUM_PARTIAL (the checksum left
    for "hardware" to fill in) and as GSO super-frames up to 64 KB. A packet socket on the far end copies
    such a frame as is, so the userspace delay link would forward bad checksums and oversized frames.
    With TX checksumming off the kernel completes the checksum (skb_checksum_help) and, since TSO needs
    checksum offload, segments GSO frames before they reach the veth.
    """
    _ethtool_set(ifname, ETHTOOL_STXCSUM, 0)
    _ethtool_set(ifname, ETHTOOL_SGSO, 0)
