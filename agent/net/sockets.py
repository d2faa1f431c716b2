"""Opening the raw sockets, with kernel receive timestamps and in-kernel filters.

The probe socket set (`SocketSet`):
- `send`: SOCK_RAW/IPPROTO_RAW, which implies IP_HDRINCL (raw(7)): we write the whole IPv4 header, so
  TTL, IP ID and the transport header are exactly what agent.packets built, for every protocol. The
  kernel still fills in the header checksum and total length, and the source address if it is 0.0.0.0.
- `icmp`: SOCK_RAW/IPPROTO_ICMP receives a copy of every ICMP packet for this host (time exceeded,
  destination unreachable, echo reply: the answers to ICMP, UDP and TCP probes alike). An ICMP_FILTER
  (raw(7), SOL_RAW) drops every other type in the kernel.
- `tcp`: SOCK_RAW/IPPROTO_TCP receives a copy of every TCP segment for this host; a classic BPF filter
  keeps only those with SYN or RST set, so the agent's own HTTP traffic is not copied to us.

About the raw TCP SYN: no socket of ours owns its source port, so when the SYN-ACK comes back the kernel
finds no connection and answers it with a RST (RFC 793, "reset generation", state CLOSED). That is
harmless, even polite: the target frees its half-open connection at once instead of retransmitting its
SYN-ACK, and our raw socket has already seen the SYN-ACK, since raw sockets get their copy before TCP.

Every receive socket has SO_TIMESTAMPNS set, so `recvmsg` returns the kernel's receive time (the moment
the packet reached the socket layer, not when Python got around to reading it); see `agent.net.clock`.

Raw sockets need CAP_NET_RAW (raw(7)); without it socket() fails with EPERM and we raise PrivilegeError
with the ways to grant just that capability.
"""

from __future__ import annotations

import array
import errno
import logging
import socket
import struct
from dataclasses import dataclass

from agent.errors import PrivilegeError

log = logging.getLogger("nkprobe.net")

# <asm-generic/socket.h>: SO_TIMESTAMPNS_OLD (the SO_TIMESTAMPNS of 64-bit userlands) delivers a
# struct timespec of two longs; SO_TIMESTAMPNS_NEW (64) a __kernel_timespec of two 64-bit values, which
# 32-bit userlands (Raspberry Pi OS armhf) need for post-2038 times. We ask for the one whose layout we
# can read on this platform and parse the control message by its length.
SO_TIMESTAMPNS_OLD = 35
SO_TIMESTAMPNS_NEW = 64
SO_ATTACH_FILTER = 26
SOL_RAW = 255
ICMP_FILTER = 1  # <linux/icmp.h>: a bit mask of ICMP types to drop

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12

PRIVILEGE_HINT = (
    "raw sockets need CAP_NET_RAW: run as root, or grant only that capability: "
    "systemd unit 'AmbientCapabilities=CAP_NET_RAW', or "
    "'setpriv --inh-caps +net_raw --ambient-caps +net_raw nkprobe ...', or "
    "'setcap cap_net_raw+ep' on the Python interpreter the agent runs with"
)

_TIMESPEC_SIZES = {16: "=qq", 8: "=ii"}
RECV_BUFSIZE = 1 << 16
# The control buffer holds one timestamp message (header + timespec) with room to spare.
CMSG_SPACE = socket.CMSG_SPACE(16)


@dataclass
class SocketSet:
    """One process-wide set of probe sockets, shared by every trace and ping (all replies are matched
    by their quoted headers, so nothing needs a socket of its own)."""

    send: socket.socket
    icmp: socket.socket
    tcp: socket.socket
    stamped: bool = True  # the kernel stamps every received packet (SO_TIMESTAMPNS): reading may wait

    def close(self) -> None:
        for s in (self.send, self.icmp, self.tcp):
            s.close()

    def receivers(self) -> tuple[socket.socket, ...]:
        return (self.icmp, self.tcp)


def _raw(proto: int) -> socket.socket:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    except PermissionError as exc:
        raise PrivilegeError(f"cannot open a raw socket ({exc.strerror}); {PRIVILEGE_HINT}") from None
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PrivilegeError(f"cannot open a raw socket ({exc.strerror}); {PRIVILEGE_HINT}") from None
        raise


def enable_timestamps(sock: socket.socket) -> bool:
    """Ask for kernel receive timestamps in nanoseconds (SO_TIMESTAMPNS); False, with a warning, where
    the system refuses both layouts. Then `parse_timestamp` finds none and a reply's time is when it was
    read (agent.net.clock), later by the event loop's delay: RTTs err long, by a fraction of a ms on an
    idle host. qemu-user (the emulated Raspberry Pi roots) refuses SO_TIMESTAMPNS this way."""
    option = SO_TIMESTAMPNS_OLD if struct.calcsize("l") == 8 else SO_TIMESTAMPNS_NEW
    for attempt in (option, SO_TIMESTAMPNS_OLD):  # a pre-5.1 kernel on 32 bits has only the old option
        try:
            sock.setsockopt(socket.SOL_SOCKET, attempt, 1)
            return True
        except OSError as exc:
            refused = exc
    log.warning(
        "no kernel receive timestamps (SO_TIMESTAMPNS: %s): RTTs are taken when a reply is read",
        refused.strerror or refused,
    )
    return False


def icmp_filter_mask(allowed_types: tuple[int, ...]) -> int:
    """The ICMP_FILTER mask that drops every type except `allowed_types` (bit n set = drop type n).

    >>> hex(icmp_filter_mask((0, 3, 11)))
    '0xfffff7f6'
    """
    mask = 0xFFFFFFFF
    for t in allowed_types:
        mask &= ~(1 << t)
    return mask


# A classic BPF program for a raw IPv4 socket (the packet starts at the IP header): accept a TCP segment
# only if SYN or RST is set. X = IP header length (BPF_MSH, "4 * (P[0] & 0xf)"), A = TCP flags byte
# at X + 13, then "jset 0x06". Each tuple is (code, jt, jf, k) as in <linux/filter.h>.
_BPF_SYN_OR_RST: tuple[tuple[int, int, int, int], ...] = (
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)
    (0x50, 0, 0, 13),  # ldb [x+13]
    (0x45, 0, 1, 0x06),  # jset #0x06, accept, drop
    (0x06, 0, 0, 0xFFFF),  # ret #65535
    (0x06, 0, 0, 0),  # ret #0
)


def attach_bpf(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """SO_ATTACH_FILTER (socket(7)); the kernel copies the program, so the buffer may die afterwards.

    struct sock_fprog holds the program's address: an array's buffer_info() gives it (the array module's
    documentation names such calls as its use), where ctypes, with libffi, was 2-3 ms of every
    `nkprobe trace`'s start-up (bench/startup.py)."""
    code = array.array("B", b"".join(struct.pack("HBBI", *ins) for ins in program))
    fprog = struct.pack("HL", len(program), code.buffer_info()[0])
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_socket_set() -> SocketSet:
    """Open the probe sockets in the calling thread's network namespace (see agent.net.netns)."""
    send = _raw(socket.IPPROTO_RAW)
    try:
        icmp = _raw(socket.IPPROTO_ICMP)
        tcp = _raw(socket.IPPROTO_TCP)
    except BaseException:
        send.close()
        raise
    for s in (send, icmp, tcp):
        s.setblocking(False)
    # A bigger receive buffer so a burst of answers from many parallel traces is not dropped while the
    # event loop is busy; the kernel caps it at net.core.rmem_max without CAP_NET_ADMIN.
    stamped = True
    for s in (icmp, tcp):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        stamped = enable_timestamps(s) and stamped
    icmp.setsockopt(
        SOL_RAW,
        ICMP_FILTER,
        struct.pack(
            "I", icmp_filter_mask((ICMP_ECHOREPLY, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB))
        ),
    )
    attach_bpf(tcp, _BPF_SYN_OR_RST)
    return SocketSet(send=send, icmp=icmp, tcp=tcp, stamped=stamped)


_TS64 = struct.Struct("=qq")
TIMESTAMP_KINDS = frozenset({SO_TIMESTAMPNS_OLD, SO_TIMESTAMPNS_NEW})  # cmsg types of SOL_SOCKET


def parse_timestamp(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel receive time (CLOCK_REALTIME, ns) from recvmsg's ancillary data, if present."""
    if len(ancdata) == 1:  # the usual case, once per packet: one 64-bit timespec
        level, kind, data = ancdata[0]
        if level == socket.SOL_SOCKET and len(data) == 16 and kind in TIMESTAMP_KINDS:
            sec, nsec = _TS64.unpack(data)
            return int(sec * 1_000_000_000 + nsec)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind in (SO_TIMESTAMPNS_OLD, SO_TIMESTAMPNS_NEW):
            fmt = _TIMESPEC_SIZES.get(len(data))
            if fmt is None:
                continue
            sec, nsec = struct.unpack(fmt, data)
            return int(sec) * 1_000_000_000 + int(nsec)
    return None


def source_address(dst: str) -> str:
    """The local address the kernel would send from toward `dst`.

    Connecting a UDP socket only runs the route lookup and binds a source address; no packet is sent
    (udp(7), connect). Call it inside the probe namespace (agent.net.netns) when there is one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))  # any port: nothing is sent
        addr: str = s.getsockname()[0]
        return addr
