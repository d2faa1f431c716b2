"""A one-line human description of any packet, for debug logs of packets `parse` refused.

Uses scapy's dissectors, imported on first use only (DESIGN.md: scapy costs a second and tens of MB on a
Raspberry Pi, so the probing path never imports it).
"""

from __future__ import annotations


def describe(data: bytes, limit: int = 200) -> str:
    """scapy's summary of an IPv4 packet, or a hex dump when even scapy cannot make sense of it.

    >>> describe(b"\\x00\\x01")
    'undecodable 2 bytes: 0001'
    """
    if len(data) >= 20 and data[0] >> 4 == 4:
        try:
            from scapy.layers.inet import IP

            return str(IP(data).summary())[:limit]
        except Exception as exc:  # scapy's dissectors can raise almost anything on garbage
            return f"undecodable {len(data)} bytes ({type(exc).__name__}): {data[: limit // 2].hex()}"
    return f"undecodable {len(data)} bytes: {data[: limit // 2].hex()}"
