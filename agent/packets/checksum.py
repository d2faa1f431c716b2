"""The Internet checksum (RFC 1071) and the one's-complement arithmetic Paris traceroute relies on."""

from __future__ import annotations

import array
import sys


def ones_sum(data: bytes) -> int:
    """The folded 16-bit one's-complement sum of `data` (big-endian words, odd length zero-padded).

    >>> hex(ones_sum(b"\\x00\\x01\\xf2\\x03\\xf4\\xf5\\xf6\\xf7"))  # RFC 1071 section 3 example
    '0xddf2'
    """
    if len(data) % 2:
        data += b"\x00"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_checksum(data: bytes) -> int:
    """The checksum to write into a header whose checksum field is zero in `data` (RFC 1071).

    >>> inet_checksum(bytes.fromhex("450000730000400040110000c0a80001c0a800c7"))  # an IPv4 header
    47201
    """
    return ~ones_sum(data) & 0xFFFF


def compensate(word: int) -> int:
    """The 16-bit word that cancels `word` in a one's-complement sum.

    Paris traceroute (Augustin et al., IMC 2006, section 3) varies a probe's identity while keeping the
    transport checksum constant: next to the identity word it writes `compensate(identity)`, and since
    `word + ~word == 0xFFFF`, which is negative zero in one's-complement arithmetic, the checksum of the
    whole packet does not change.

    >>> compensate(0x1234)
    60875
    >>> ones_sum(bytes([0x12, 0x34]) + compensate(0x1234).to_bytes(2, "big"))  # negative zero
    65535
    """
    return ~word & 0xFFFF
