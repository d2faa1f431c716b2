"""Synthesize the replies a network sends to our probes: for the scripted wire (agent.lab.sim), tests
and fuzzing. Plain `struct`, so a fuzz loop can make hundreds of thousands of packets in seconds.

Every function takes the probe's bytes as sent (agent.packets.build) and returns the reply's IPv4 packet
as a raw socket would receive it.
"""

from __future__ import annotations

import socket
import struct

from agent.packets.checksum import inet_checksum
from agent.packets.icmpext import build_mpls_extension

MplsEntries = list[tuple[int, int, bool, int]]  # (label, exp, bottom of stack, ttl)


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 0) -> bytes:
    """An IPv4 packet around `payload` with a correct header checksum."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, ttl, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return header[:10] + struct.pack("!H", inet_checksum(header)) + header[12:] + payload


def _icmp(icmp_type: int, code: int, rest: bytes, body: bytes) -> bytes:
    unsummed = struct.pack("!BBH", icmp_type, code, 0) + rest + body
    return unsummed[:2] + struct.pack("!H", inet_checksum(unsummed)) + unsummed[4:]


def icmp_error(
    probe: bytes,
    src: str,
    *,
    icmp_type: int = 11,
    code: int = 0,
    quote: int | None = 8,
    quoted_ttl: int | None = 1,
    mpls: MplsEntries | None = None,
    compat: bool = False,
    ttl: int = 250,
) -> bytes:
    """The ICMP error `src` sends about `probe` (type 11 time exceeded or 3 unreachable).

    `quote`: transport bytes quoted after the IP header (8 as RFC 792, None for the whole probe as
    RFC 1812 routers do). `quoted_ttl`: the probe's TTL as it arrived (None: unchanged). `mpls`: append
    an RFC 4950 label stack in an RFC 4884 extension (`compat`: the pre-RFC 4884 layout, length byte 0).
    """
    ihl = (probe[0] & 0x0F) * 4
    quoted = bytearray(probe if quote is None else probe[: ihl + quote])
    if quoted_ttl is not None:
        quoted[8] = quoted_ttl
    length_byte = 0
    extension = b""
    if mpls is not None:
        quoted += bytes(max(0, 128 - len(quoted)))  # RFC 4884 section 4.1: at least 128 bytes, padded
        quoted += bytes(-len(quoted) % 4)
        length_byte = 0 if compat else len(quoted) // 4
        extension = build_mpls_extension(mpls)
    rest = struct.pack("!BBH", 0, length_byte, 0)
    dst = socket.inet_ntoa(probe[12:16])
    return ipv4(
        src, dst, socket.IPPROTO_ICMP, _icmp(icmp_type, code, rest, bytes(quoted) + extension), ttl=ttl
    )


def echo_reply(probe: bytes, *, ttl: int = 60) -> bytes:
    """The destination's echo reply to an ICMP echo probe (RFC 792: same identifier, sequence, data)."""
    ihl = (probe[0] & 0x0F) * 4
    request = probe[ihl:]
    src, dst = socket.inet_ntoa(probe[16:20]), socket.inet_ntoa(probe[12:16])
    return ipv4(src, dst, socket.IPPROTO_ICMP, _icmp(0, 0, request[4:8], request[8:]), ttl=ttl)


def tcp_answer(probe: bytes, *, rst: bool = False, ttl: int = 60, ack_delta: int = 1) -> bytes:
    """The destination's SYN-ACK (open port) or RST-ACK (closed port) to a TCP SYN probe."""
    ihl = (probe[0] & 0x0F) * 4
    sport, dport, seq = struct.unpack_from("!HHI", probe, ihl)
    src, dst = socket.inet_ntoa(probe[16:20]), socket.inet_ntoa(probe[12:16])
    flags = 0x14 if rst else 0x12
    header = struct.pack(
        "!HHIIBBHHH", dport, sport, 0 if rst else 0x12345678, (seq + ack_delta) & 0xFFFFFFFF, 5 << 4, flags,
        0 if rst else 64240, 0, 0,
    )  # fmt: skip
    pseudo = probe[16:20] + probe[12:16] + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
    csum = inet_checksum(pseudo + header)
    return ipv4(src, dst, socket.IPPROTO_TCP, header[:16] + struct.pack("!H", csum) + header[18:], ttl=ttl)
