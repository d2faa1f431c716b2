"""ICMP extension structures (RFC 4884) and the MPLS label stack object in them (RFC 4950).

Routers inside an MPLS tunnel that expire a labelled packet may append, after the quoted datagram, an
extension structure: a 4-byte header (version 2, checksum over the whole structure) and objects
(length, class-num, c-type, payload). Class 1, c-type 1 (RFC 4950) is the label stack as received: 4 bytes
an entry: label (20 bits), traffic class/EXP (3), bottom of stack (1), TTL (8).

RFC 4884 puts the original datagram's length, in 32-bit words, in byte 5 of the ICMP header (types 3, 11,
12). Routers that predate it write 0 there and put the extension at offset 128 of the ICMP payload
(RFC 4884 section 5.5); we accept that layout only when the extension checksum verifies.
"""

from __future__ import annotations

from agent.model import MplsLabel
from agent.packets.checksum import ones_sum

EXTENSION_VERSION = 2
COMPAT_OFFSET = 128  # RFC 4884 section 5.5: non-compliant extensions follow a 128-byte datagram field
MPLS_CLASS = 1
MPLS_INCOMING_STACK = 1


def split_icmp_payload(icmp: bytes) -> tuple[bytes, tuple[MplsLabel, ...]]:
    """Split an ICMP error message into (original datagram bytes, MPLS labels); never raises.

    `icmp` starts at the ICMP type byte. Without extensions the datagram is everything after the
    8-byte ICMP header.

    >>> split_icmp_payload(bytes(8) + b"quoted")
    (b'quoted', ())
    """
    body = icmp[8:]
    length_words = icmp[5] if len(icmp) > 5 else 0
    if length_words:
        datagram_len = length_words * 4
        if datagram_len >= len(body):
            return body, ()  # no room for an extension: the length byte meant nothing
        return body[:datagram_len], _parse_structure(body[datagram_len:], strict=False)
    if len(body) >= COMPAT_OFFSET + 4:
        labels = _parse_structure(body[COMPAT_OFFSET:], strict=True)
        if labels is not None:
            return body[:COMPAT_OFFSET], labels
    return body, ()


def _parse_structure(ext: bytes, *, strict: bool) -> tuple[MplsLabel, ...]:
    """MPLS labels from an extension structure; malformed objects yield what parsed before them.

    With `strict` (a guessed offset) a bad version or checksum yields () and a checksum of 0 is refused.
    """
    if len(ext) < 4 or ext[0] >> 4 != EXTENSION_VERSION:
        return ()
    checksum = (ext[2] << 8) | ext[3]
    if (checksum or strict) and ones_sum(ext) != 0xFFFF:
        return ()
    labels: list[MplsLabel] = []
    offset = 4
    while offset + 4 <= len(ext):
        obj_len = (ext[offset] << 8) | ext[offset + 1]
        class_num, c_type = ext[offset + 2], ext[offset + 3]
        if obj_len < 4 or offset + obj_len > len(ext):
            break
        if class_num == MPLS_CLASS and c_type == MPLS_INCOMING_STACK:
            for entry in range(offset + 4, offset + obj_len - 3, 4):
                value = int.from_bytes(ext[entry : entry + 4], "big")
                labels.append(
                    MplsLabel(
                        label=value >> 12, exp=(value >> 9) & 7, bottom=bool(value & 0x100), ttl=value & 0xFF
                    )
                )
        offset += obj_len
    return tuple(labels)


def build_mpls_extension(labels: list[tuple[int, int, bool, int]]) -> bytes:
    """An RFC 4884 extension structure with one RFC 4950 label stack object (for tests and the lab).

    >>> from agent.packets.icmpext import _parse_structure
    >>> _parse_structure(build_mpls_extension([(16005, 0, True, 1)]), strict=True)[0].label
    16005
    """
    entries = b"".join(
        ((label << 12) | (exp << 9) | (int(bottom) << 8) | ttl).to_bytes(4, "big")
        for label, exp, bottom, ttl in labels
    )
    obj = (4 + len(entries)).to_bytes(2, "big") + bytes([MPLS_CLASS, MPLS_INCOMING_STACK]) + entries
    unsummed = bytes([EXTENSION_VERSION << 4, 0, 0, 0]) + obj
    checksum = ~ones_sum(unsummed) & 0xFFFF
    return unsummed[:2] + checksum.to_bytes(2, "big") + unsummed[4:]
